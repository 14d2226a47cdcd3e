using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

public sealed class StreamingDecoderTests(TokenizerFixtures fixtures) : IClassFixture<TokenizerFixtures>
{
    private MistralTokenizer Tok => fixtures.Mistral;

    [Fact]
    public void First_piece_loses_its_dummy_prefix_space_and_later_ones_keep_it()
    {
        StreamingDecoder d = Tok.CreateStreamingDecoder();
        new[] { d.Append(1), d.Append(22557), d.Append(28725), d.Append(1526), d.Append(28808), d.Flush() }
            .Should().Equal("", "Hello", ",", " world", "!", "");
    }

    [Fact]
    public void Byte_fallback_pieces_are_held_until_the_character_is_whole()
    {
        // 🦙 = F0 9F A6 99 -> ids 243, 162, 169, 156 after "▁" (28705).
        StreamingDecoder d = Tok.CreateStreamingDecoder();
        d.Append(28705).Should().Be("");
        d.Append(243).Should().Be("");
        d.HasPendingBytes.Should().BeTrue();
        d.Append(162).Should().Be("");
        d.Append(169).Should().Be("");
        d.Append(156).Should().Be("🦙");
        d.HasPendingBytes.Should().BeFalse();
        d.Append(1526).Should().Be(" world");
    }

    [Fact]
    public void Bytes_that_cannot_form_a_character_become_one_replacement_each_like_sentencepiece()
    {
        // E4 B8 (incomplete 中) then 'A' (0x41): SentencePiece decodes "\uFFFD\uFFFDA".
        StreamingDecoder d = Tok.CreateStreamingDecoder();
        d.Append(3 + 0xE4).Should().Be("");
        d.Append(3 + 0xB8).Should().Be("");
        d.Append(3 + 0x41).Should().Be("\uFFFD\uFFFDA");
        d.Append(3 + 0xF0).Should().Be("");
        d.Flush().Should().Be("\uFFFD");
        Tok.Decode([3 + 0xE4, 3 + 0xB8, 3 + 0x41, 3 + 0xF0]).Should().Be("\uFFFD\uFFFDA\uFFFD");
    }

    [Fact]
    public void A_control_token_ends_a_byte_run()
    {
        // SentencePiece: [E4 B8 <s> AD] -> three replacement characters, not 中.
        Tok.Decode([3 + 0xE4, 3 + 0xB8, 1, 3 + 0xAD]).Should().Be("\uFFFD\uFFFD\uFFFD");
        Tok.Decode([3 + 0xE4, 3 + 0xB8, 3 + 0xAD]).Should().Be("中");
    }

    [Fact]
    public void Reset_starts_a_new_sequence()
    {
        StreamingDecoder d = Tok.CreateStreamingDecoder();
        d.Append(22557).Should().Be("Hello");
        d.Append(22557).Should().Be(" Hello");
        d.Append(243).Should().Be("");
        d.Reset();
        d.HasPendingBytes.Should().BeFalse();
        d.Append(22557).Should().Be("Hello");
    }

    [Fact]
    public void Out_of_range_id_is_rejected_with_the_id_named()
    {
        StreamingDecoder d = Tok.CreateStreamingDecoder();
        FluentActions.Invoking(() => d.Append(32000)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*32000*");
        FluentActions.Invoking(() => Tok.Decode([5, -1])).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*-1*");
    }

    [Fact]
    public void Special_tokens_are_shown_when_not_skipped()
    {
        Tok.Decode([1, 22557, 2], skipSpecialTokens: false).Should().Be("<s>Hello</s>");
        Tok.Decode([1, 22557, 2]).Should().Be("Hello");
        Tok.Decode([0, 22557], skipSpecialTokens: false).Should().Be("<unk> Hello");
        Tok.Decode([0, 22557]).Should().Be(" \u2047  Hello", "SentencePiece's unk_surface");
        StreamingDecoder d = Tok.CreateStreamingDecoder(skipSpecialTokens: false);
        d.SkipSpecialTokens.Should().BeFalse();
        new[] { d.Append(1), d.Append(22557), d.Append(2) }.Should().Equal("<s>", "Hello", "</s>");
    }
}
