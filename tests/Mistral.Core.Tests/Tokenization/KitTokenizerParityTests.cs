using System.Text.Json;
using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

/// <summary>
/// The kit's tokenizer (kit/model/tokenizer.model, trained by Debian's spm_train on the kit's training text with
/// tools/kit/train_tokenizer.py) loads unchanged and encodes and decodes exactly as python3-sentencepiece does.
/// </summary>
public sealed class KitTokenizerParityTests
{
    [Fact]
    public void EveryCaseEncodesAndDecodesAsSentencePiece()
    {
        var tokenizer = MistralTokenizer.FromFile(TestPaths.RepoPath("kit", "model", "tokenizer.model"));
        using var doc = JsonDocument.Parse(File.ReadAllText(TestPaths.RepoPath("kit", "model", "tokenizer.cases.json")));
        tokenizer.VocabSize.Should().Be(doc.RootElement.GetProperty("vocab_size").GetInt32()).And.Be(8000);
        int checkedCases = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            int[] expected = c.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            tokenizer.Encode(text, addBeginningOfSentence: false, addEndOfSentence: false).Should().Equal(expected, $"ids of {JsonSerializer.Serialize(text)}");
            tokenizer.Decode(expected).Should().Be(c.GetProperty("decoded").GetString(), $"decoding {JsonSerializer.Serialize(text)}");
            checkedCases++;
        }

        checkedCases.Should().BeGreaterThan(300);
        tokenizer.BosId.Should().Be(1);
        tokenizer.EosId.Should().Be(2);
    }
}
