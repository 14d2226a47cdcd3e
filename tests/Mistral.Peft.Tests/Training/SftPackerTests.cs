using Mistral.Core.Tokenization;
using Mistral.Peft.Training;

namespace Mistral.Peft.Tests.Training;

public class SftPackerTests
{
    private static readonly int[][] Texts = [[5, 6, 7], [8], [9, 10, 11, 12]];

    private static int[][] Blocks(PackedDataset d) => d.Blocks.Select(b => b.ToArray()).ToArray();

    [Fact]
    public void PacksBosTextEosIntoConsecutiveBlocksAndCountsTheDroppedTail()
    {
        // stream: 1 5 6 7 2 | 1 8 2 | 1 9 10 11 12 2  (17 tokens) → 4 blocks of 4, 1 token dropped
        var d = new SftPacker(new SftPackingOptions { SequenceLength = 4 }).Pack(Texts);
        Blocks(d).Should().BeEquivalentTo(new int[][] { [1, 5, 6, 7], [2, 1, 8, 2], [1, 9, 10, 11], [12, 2] }.Take(3), o => o.WithStrictOrdering());
        d.Count.Should().Be(3);
        d.TextCount.Should().Be(3);
        d.DroppedTokens.Should().Be(2);
        d.TokenCount.Should().Be(12);
        d.Describe().Should().Be("3 blocks of 4 tokens from 3 texts; 2 trailing tokens dropped");
    }

    [Fact]
    public void WithoutBosOnlyEosSeparatesTheTexts()
    {
        // stream: 5 6 7 2 8 2 9 10 11 12 2 (11 tokens) → [5 6 7 2] [8 2 9 10], dropped 11 12 2
        var d = new SftPacker(new SftPackingOptions { SequenceLength = 4, PrependBos = false }).Pack(Texts);
        Blocks(d).Should().BeEquivalentTo(new int[][] { [5, 6, 7, 2], [8, 2, 9, 10] }, o => o.WithStrictOrdering());
        d.DroppedTokens.Should().Be(3);
    }

    [Fact]
    public void AnExactMultipleDropsNothingAndCustomIdsAreUsed()
    {
        var d = new SftPacker(new SftPackingOptions { SequenceLength = 3, BosId = 90, EosId = 91 }).Pack([[4], [5, 6, 7]]);
        Blocks(d).Should().BeEquivalentTo(new int[][] { [90, 4, 91], [90, 5, 6], [7, 91] }.Take(2), o => o.WithStrictOrdering());
        d.DroppedTokens.Should().Be(2);

        var exact = new SftPacker(new SftPackingOptions { SequenceLength = 2, PrependBos = false, AppendEos = false }).Pack([[4], [5, 6, 7]]);
        Blocks(exact).Should().BeEquivalentTo(new int[][] { [4, 5], [6, 7] }, o => o.WithStrictOrdering());
        exact.DroppedTokens.Should().Be(0);
    }

    [Fact]
    public void TooLittleTextGivesNoBlocksAndReportsEveryTokenDropped()
    {
        var d = new SftPacker().Pack([[5, 6, 7]]);
        d.Count.Should().Be(0);
        d.DroppedTokens.Should().Be(5);
        d.SequenceLength.Should().Be(512);
    }

    [Fact]
    public void StringsAreTokenizedWithoutSpecialsAndFramedWithTheTokenizersBosAndEos()
    {
        var tokenizer = MistralTokenizer.FromFile(TestPaths.FixturePath("tokenizer", "tiny-bpe.model"));
        string[] texts = ["### Sentence:hello world ### Class:greeting", "### Sentence:good night ### Class:farewell", "short"];
        var options = new SftPackingOptions { SequenceLength = 8, BosId = 500, EosId = 501 }; // ids replaced by the tokenizer's
        var d = new SftPacker(options).Pack(texts, tokenizer);

        // HF tokenizes each text with BOS (and TRL appends EOS): the stream is the concatenation of Encode(t, bos, eos).
        var stream = texts.SelectMany(t => tokenizer.Encode(t, addBeginningOfSentence: true, addEndOfSentence: true)).ToList();
        stream.Should().NotContain(500).And.NotContain(501);
        d.Blocks.SelectMany(b => b).Should().Equal(stream.Take(stream.Count / 8 * 8));
        d.DroppedTokens.Should().Be(stream.Count % 8);
        d.TextCount.Should().Be(3);
    }

    [Fact]
    public void BadInputIsRejectedNamingTheOptionOrTheText()
    {
        FluentActions.Invoking(() => new SftPacker(new SftPackingOptions { SequenceLength = 1 }))
            .Should().Throw<ArgumentException>().WithMessage("*SequenceLength*at least 2*");
        FluentActions.Invoking(() => new SftPacker(new SftPackingOptions { EosId = -1 }))
            .Should().Throw<ArgumentException>().WithMessage("*EosId*");
        FluentActions.Invoking(() => new SftPacker(new SftPackingOptions { BosId = -1 }))
            .Should().Throw<ArgumentException>().WithMessage("*BosId*");
        new SftPacker(new SftPackingOptions { BosId = -1, PrependBos = false }).Options.PrependBos.Should().BeFalse();
        FluentActions.Invoking(() => new SftPacker().Pack([[3], [4, -5]]))
            .Should().Throw<ArgumentException>().WithMessage("*texts[1][1]*-5*");
        FluentActions.Invoking(() => new PackedDataset([[1, 2, 3], [1, 2]], 3))
            .Should().Throw<ArgumentException>().WithMessage("*blocks[1]*3 ids*got 2*");
    }

    [Fact]
    public void CancellationIsHonouredBetweenTexts()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        FluentActions.Invoking(() => new SftPacker().Pack([[3]], cts.Token)).Should().Throw<OperationCanceledException>();
    }
}
