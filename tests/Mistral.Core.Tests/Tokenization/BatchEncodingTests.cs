using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

public sealed class BatchEncodingTests(TokenizerFixtures fixtures) : IClassFixture<TokenizerFixtures>
{
    // "Hello, world!" -> 1 22557 28725 1526 28808; "grabbed" -> 1 13300; "" -> 1.
    private static readonly string[] Texts = ["Hello, world!", "grabbed", ""];

    private MistralTokenizer With(TokenizerOptions options) =>
        MistralTokenizer.FromFile(fixtures.ModelPath("mistral"), options);

    [Fact]
    public void Right_padding_with_pad_equal_to_eos_as_in_the_study()
    {
        MistralTokenizer tok = With(TokenizerOptions.StudyTraining);
        tok.PadId.Should().Be(2);
        BatchEncoding b = tok.EncodeBatch(Texts);
        b.BatchSize.Should().Be(3);
        b.SequenceLength.Should().Be(5);
        b.PaddingSide.Should().Be(PaddingSide.Right);
        b.PadId.Should().Be(2);
        b.Lengths.Should().Equal(5, 2, 1);
        b.InputIds[0].Should().Equal(1, 22557, 28725, 1526, 28808);
        b.InputIds[1].Should().Equal(1, 13300, 2, 2, 2);
        b.InputIds[2].Should().Equal(1, 2, 2, 2, 2);
        b.AttentionMask[0].Should().Equal(1, 1, 1, 1, 1);
        b.AttentionMask[1].Should().Equal(1, 1, 0, 0, 0);
        b.AttentionMask[2].Should().Equal(1, 0, 0, 0, 0);
        b.ToInputIdsArray().Should().Equal(1, 22557, 28725, 1526, 28808, 1, 13300, 2, 2, 2, 1, 2, 2, 2, 2);
        b.ToAttentionMaskArray().Should().Equal(1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0);
    }

    [Fact]
    public void Left_padding_for_batched_generation()
    {
        BatchEncoding b = With(TokenizerOptions.BatchedGeneration).EncodeBatch(Texts);
        b.PaddingSide.Should().Be(PaddingSide.Left);
        b.InputIds[0].Should().Equal(1, 22557, 28725, 1526, 28808);
        b.InputIds[1].Should().Equal(2, 2, 2, 1, 13300);
        b.InputIds[2].Should().Equal(2, 2, 2, 2, 1);
        b.AttentionMask[1].Should().Equal(0, 0, 0, 1, 1);
        b.AttentionMask[2].Should().Equal(0, 0, 0, 0, 1);
    }

    [Fact]
    public void Max_length_strategy_and_multiple_of_rounding()
    {
        MistralTokenizer tok = With(TokenizerOptions.StudyTraining);
        BatchEncoding fixedLength = tok.EncodeBatch(Texts, new PaddingOptions { Strategy = PaddingStrategy.MaxLength, MaxLength = 7 });
        fixedLength.SequenceLength.Should().Be(7);
        fixedLength.InputIds[0].Should().Equal(1, 22557, 28725, 1526, 28808, 2, 2);
        fixedLength.AttentionMask[0].Should().Equal(1, 1, 1, 1, 1, 0, 0);

        BatchEncoding rounded = tok.EncodeBatch(Texts, new PaddingOptions { PadToMultipleOf = 4 });
        rounded.SequenceLength.Should().Be(8);
        rounded.InputIds[2].Should().Equal(1, 2, 2, 2, 2, 2, 2, 2);

        FluentActions.Invoking(() => tok.EncodeBatch(Texts, new PaddingOptions { Strategy = PaddingStrategy.MaxLength, MaxLength = 4 }))
            .Should().Throw<ArgumentException>().WithMessage("*texts[0] has 5 tokens*PaddingOptions.MaxLength 4*");
    }

    [Fact]
    public void Padding_without_a_pad_token_is_an_error_that_names_the_option()
    {
        MistralTokenizer tok = With(new TokenizerOptions());
        FluentActions.Invoking(() => tok.EncodeBatch(Texts)).Should().Throw<InvalidOperationException>().WithMessage("*PadToken*None*");
        BatchEncoding equal = tok.EncodeBatch(["grabbed", "grabbed"]);
        equal.InputIds[1].Should().Equal(1, 13300);
        equal.PadId.Should().Be(-1);
    }

    [Fact]
    public void Custom_pad_id()
    {
        MistralTokenizer tok = With(new TokenizerOptions { PadToken = PadTokenPolicy.Custom, CustomPadId = 0 });
        tok.PadId.Should().Be(0);
        tok.EncodeBatch(Texts).InputIds[1].Should().Equal(1, 13300, 0, 0, 0);
    }

    [Fact]
    public void Truncation_keeps_bos_and_eos_and_cuts_the_chosen_side()
    {
        MistralTokenizer tok = fixtures.Mistral;
        tok.Encode("Hello, world!", true, false, new TruncationOptions { MaxLength = 3 }).Should().Equal(1, 22557, 28725);
        tok.Encode("Hello, world!", true, false, new TruncationOptions { MaxLength = 3, Side = TruncationSide.Left }).Should().Equal(1, 1526, 28808);
        tok.Encode("Hello, world!", true, true, new TruncationOptions { MaxLength = 3 }).Should().Equal(1, 22557, 2);
        tok.Encode("Hello, world!", true, true, new TruncationOptions { MaxLength = 3, Side = TruncationSide.Left }).Should().Equal(1, 28808, 2);
        tok.Encode("Hello, world!", false, false, new TruncationOptions { MaxLength = 10 }).Should().Equal(22557, 28725, 1526, 28808);
        tok.Encode("Hello, world!", true, true, new TruncationOptions { MaxLength = 2 }).Should().Equal(1, 2);
        FluentActions.Invoking(() => tok.Encode("Hello", true, true, new TruncationOptions { MaxLength = 1 }))
            .Should().Throw<ArgumentException>().WithMessage("*TruncationOptions.MaxLength 1*");
    }

    [Fact]
    public void Options_truncation_applies_to_encode_and_batches_but_not_to_count()
    {
        MistralTokenizer tok = With(TokenizerOptions.StudyTraining with
        {
            AddEndOfSentence = true,
            Truncation = new TruncationOptions { MaxLength = 4, Side = TruncationSide.Left },
        });
        tok.Encode("Hello, world!").Should().Equal(1, 1526, 28808, 2);
        tok.CountTokens("Hello, world!").Should().Be(6);
        BatchEncoding b = tok.EncodeBatch(["Hello, world!", "grabbed"]);
        b.InputIds[0].Should().Equal(1, 1526, 28808, 2);
        b.InputIds[1].Should().Equal(1, 13300, 2, 2);
        b.AttentionMask[1].Should().Equal(1, 1, 1, 0);
    }

    [Fact]
    public void Options_choose_bos_and_eos()
    {
        MistralTokenizer tok = With(new TokenizerOptions { AddBeginningOfSentence = false, AddEndOfSentence = true });
        tok.Encode("Hello, world!").Should().Equal(22557, 28725, 1526, 28808, 2);
        tok.CountTokens("Hello, world!").Should().Be(5);
        tok.Encode("").Should().Equal(2);
    }

    [Fact]
    public void Null_text_in_a_batch_is_named()
    {
        MistralTokenizer tok = With(TokenizerOptions.StudyTraining);
        FluentActions.Invoking(() => tok.EncodeBatch(["a", null!])).Should().Throw<ArgumentException>().WithMessage("*texts[1]*");
    }
}
