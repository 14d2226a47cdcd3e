using Mistral.Eval.Metrics;

namespace Mistral.Eval.Tests.Metrics;

public class PorterStemmerTests
{
    [Fact]
    public void Every_word_of_the_Porter_vocabulary_stems_as_NLTK_3_8_does()
    {
        // voc.txt and NLTK 3.8's output in its default NLTK_EXTENSIONS mode, line by line.
        string[] words = File.ReadAllLines(MetricsFixtures.PathOf("porter", "voc.txt"));
        string[] expected = File.ReadAllLines(MetricsFixtures.PathOf("porter", "nltk_extensions_output.txt"));
        words.Should().HaveCount(23532);
        expected.Should().HaveCount(words.Length);

        var stemmer = new PorterStemmer();
        var mismatches = new List<string>();
        for (int i = 0; i < words.Length; i++)
        {
            string actual = stemmer.Stem(words[i]);
            if (actual != expected[i])
            {
                mismatches.Add($"line {i + 1}: {words[i]} -> {actual}, NLTK {expected[i]}");
            }
        }

        mismatches.Should().BeEmpty();
    }

    [Theory]
    [InlineData("dying", "die")]
    [InlineData("skies", "sky")]
    [InlineData("ties", "tie")]
    [InlineData("cried", "cri")]
    [InlineData("enjoy", "enjoy")]
    [InlineData("happy", "happi")]
    [InlineData("generalization", "gener")]
    [InlineData("analogies", "analog")]
    [InlineData("meeting", "meet")]
    [InlineData("a", "a")]
    [InlineData("Running", "run")]
    public void Applies_the_NLTK_extensions(string word, string stem) =>
        new PorterStemmer().Stem(word).Should().Be(stem);
}
