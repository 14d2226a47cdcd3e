using Microsoft.ML.Tokenizers;
using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

/// <summary>
/// Mistral-7B-v0.1's tokenizer rebuilt from npm's mistral-tokenizer-js@1.0.0 (tests/fixtures/tokenizer/README.md):
/// published ids and the package's own test cases.
/// </summary>
public sealed class MistralKnownIdsTests(TokenizerFixtures fixtures) : IClassFixture<TokenizerFixtures>
{
    private MistralTokenizer Tok => fixtures.Mistral;

    [Fact]
    public void Special_ids_and_vocabulary_size_are_mistrals()
    {
        Tok.BosId.Should().Be(1);
        Tok.EosId.Should().Be(2);
        Tok.UnknownId.Should().Be(0);
        Tok.VocabSize.Should().Be(32000);
        Tok.PadId.Should().BeNull("Mistral has no pad token unless the options choose one");
        Tok.IdToPiece(1).Should().Be("<s>");
        Tok.IdToPiece(2).Should().Be("</s>");
        Tok.IdToPiece(13).Should().Be("<0x0A>");
        Tok.IdToPiece(28705).Should().Be("\u2581");
        Tok.GetPieceType(1).Should().Be(SentencePieceType.Control);
        Tok.GetPieceType(0).Should().Be(SentencePieceType.Unknown);
        Tok.GetPieceType(13).Should().Be(SentencePieceType.Byte);
        Tok.GetPieceType(22557).Should().Be(SentencePieceType.Normal);
        Tok.TryGetId("\u2581Hello", out int hello).Should().BeTrue();
        hello.Should().Be(22557);
        Tok.TryGetId("no such piece", out _).Should().BeFalse();
    }

    [Fact]
    public void Hello_world_has_the_published_ids()
    {
        Tok.Encode("Hello, world!").Should().Equal(1, 22557, 28725, 1526, 28808);
        Tok.EncodeToPieces("Hello, world!").Should().Equal("\u2581Hello", ",", "\u2581world", "!");
        Tok.CountTokens("Hello, world!").Should().Be(5);
        Tok.Decode([1, 22557, 28725, 1526, 28808]).Should().Be("Hello, world!");
    }

    [Theory]
    [InlineData("grabbed", new[] { 1, 13300 })]
    [InlineData(" grabbed", new[] { 1, 28705, 13300 })]
    [InlineData("           grabbed", new[] { 1, 17422, 13300 })]
    [InlineData("\n", new[] { 1, 28705, 13 })]
    [InlineData(" \n", new[] { 1, 259, 13 })]
    [InlineData("\ttabs\t\t\t\tout here", new[] { 1, 28705, 12, 24856, 12, 12, 12, 12, 406, 1236 })]
    [InlineData("ax\n####\nboo", new[] { 1, 6056, 13, 2000, 13, 1798, 28709 })]
    [InlineData("镇", new[] { 1, 28705, 29780 })]
    [InlineData("🦙", new[] { 1, 28705, 243, 162, 169, 156 })]
    [InlineData("🦙Ꙋ", new[] { 1, 28705, 243, 162, 169, 156, 237, 156, 141 })]
    [InlineData("Ꙋ🦙", new[] { 1, 28705, 237, 156, 141, 243, 162, 169, 156 })]
    [InlineData("", new[] { 1 })]
    public void Mistral_tokenizer_js_test_cases_round_trip(string text, int[] expected)
    {
        Tok.Encode(text).Should().Equal(expected);
        Tok.Decode(expected).Should().Be(text);
    }

    [Fact]
    public void MlNet_LlamaTokenizer_2_0_1_breaks_equal_score_ties_the_other_way()
    {
        // "a" x 32 is a run of equal-score merges: SentencePiece merges the leftmost pair first, LlamaTokenizer 2.0.1
        // the rightmost, so the pieces come out in the reverse order. If this starts failing, Microsoft.ML.Tokenizers
        // has fixed the tie-break and SentencePieceBpeEncoder could be replaced by Inner.EncodeToIds.
        string text = new('a', 32);
        int[] sentencePiece = [264, 25332, 25332, 25332, 12648, 4474, 28708];
        Tok.Encode(text, false, false).Should().Equal(sentencePiece);
        LlamaTokenizer inner = Tok.Inner;
        inner.EncodeToIds(text, false, false).Should().Equal(264, 28708, 4474, 12648, 25332, 25332, 25332);
    }
}
