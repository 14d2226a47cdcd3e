using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

public sealed class TokenizerBehaviourTests(TokenizerFixtures fixtures) : IClassFixture<TokenizerFixtures>
{
    [Fact]
    public void Extra_control_pieces_are_invisible_unless_asked_for_and_never_come_from_text()
    {
        // tiny-bpe-udf: 3 = [INST], 4 = [/INST] (CONTROL), 5 = <|im_start|>, 6 = ###, 7 = @@ (USER_DEFINED).
        MistralTokenizer tok = fixtures.TinyWithUserDefined;
        tok.GetPieceType(3).Should().Be(SentencePieceType.Control);
        tok.GetPieceType(6).Should().Be(SentencePieceType.UserDefined);
        tok.Decode([1, 3, 6, 4, 2]).Should().Be("###");
        tok.Decode([1, 3, 6, 4, 2], skipSpecialTokens: false).Should().Be("<s>[INST]###[/INST]</s>");
        tok.Encode("[INST]", false, false).Should().NotContain(3);
        tok.EncodeToPieces("a###b@@c").Should().Equal("\u2581a", "###", "b", "@@", "c");
    }

    [Fact]
    public void Concurrent_encoding_gives_the_same_ids()
    {
        MistralTokenizer tok = fixtures.Mistral;
        IReadOnlyList<EncodeCase> cases = fixtures.EncodeCases("mistral");
        var results = new int[cases.Count][];
        Parallel.For(0, cases.Count, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            results[i] = tok.Encode(cases[i].Text, false, false));
        for (int i = 0; i < cases.Count; i++)
        {
            results[i].Should().Equal(cases[i].Ids);
        }
    }

    [Fact]
    public void Count_tokens_matches_encode_and_detects_an_over_long_prompt()
    {
        MistralTokenizer tok = fixtures.Mistral;
        string prompt = string.Concat(Enumerable.Repeat("Sentence: The goalie made 41 saves. \n Class: rec.sport.hockey \n\n", 40));
        int count = tok.CountTokens(prompt);
        count.Should().Be(tok.Encode(prompt).Length);
        count.Should().Be(1042, "python3-sentencepiece: len(sp.encode(prompt)) + BOS = 1041 + 1");
        tok.CountTokens(prompt, false, false).Should().Be(1041);
        (count > 512).Should().BeTrue("the study's max_seq_length is 512: such a few-shot prompt does not fit");
    }
}
