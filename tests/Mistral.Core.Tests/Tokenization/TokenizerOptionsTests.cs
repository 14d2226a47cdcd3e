using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

public sealed class TokenizerOptionsTests(TokenizerFixtures fixtures) : IClassFixture<TokenizerFixtures>
{
    [Fact]
    public void Defaults_are_mistrals_own_settings()
    {
        var o = new TokenizerOptions();
        o.AddBeginningOfSentence.Should().BeTrue();
        o.AddEndOfSentence.Should().BeFalse();
        o.PadToken.Should().Be(PadTokenPolicy.None);
        o.Padding.Side.Should().Be(PaddingSide.Right);
        o.Padding.Strategy.Should().Be(PaddingStrategy.Longest);
        o.Truncation.Should().BeNull();
        o.Validate();
        TokenizerOptions.StudyTraining.PadToken.Should().Be(PadTokenPolicy.EndOfSentence);
        TokenizerOptions.BatchedGeneration.Padding.Side.Should().Be(PaddingSide.Left);
    }

    public static TheoryData<TokenizerOptions, string, string> Invalid => new()
    {
        { new TokenizerOptions { PadToken = PadTokenPolicy.Custom }, "CustomPadId", "*TokenizerOptions.CustomPadId is required*" },
        { new TokenizerOptions { CustomPadId = 5 }, "CustomPadId", "*TokenizerOptions.CustomPadId (5)*PadToken is None*" },
        { new TokenizerOptions { PadToken = PadTokenPolicy.Custom, CustomPadId = -3 }, "CustomPadId", "*CustomPadId must be a token id*-3*" },
        { new TokenizerOptions { PadToken = (PadTokenPolicy)9 }, "PadToken", "*TokenizerOptions.PadToken*9*" },
        { new TokenizerOptions { Padding = null! }, "Padding", "*TokenizerOptions.Padding*" },
        { new TokenizerOptions { Padding = new PaddingOptions { Strategy = PaddingStrategy.MaxLength } }, "MaxLength", "*PaddingOptions.MaxLength is required*" },
        { new TokenizerOptions { Padding = new PaddingOptions { MaxLength = 8 } }, "MaxLength", "*PaddingOptions.MaxLength (8)*Longest*" },
        { new TokenizerOptions { Padding = new PaddingOptions { Strategy = PaddingStrategy.MaxLength, MaxLength = 0 } }, "MaxLength", "*PaddingOptions.MaxLength must be positive*" },
        { new TokenizerOptions { Padding = new PaddingOptions { PadToMultipleOf = -8 } }, "PadToMultipleOf", "*PaddingOptions.PadToMultipleOf*-8*" },
        { new TokenizerOptions { Padding = new PaddingOptions { Side = (PaddingSide)7 } }, "Side", "*PaddingOptions.Side*7*" },
        { new TokenizerOptions { Truncation = new TruncationOptions { MaxLength = 0 } }, "MaxLength", "*TruncationOptions.MaxLength must be positive*" },
        { new TokenizerOptions { Truncation = new TruncationOptions { MaxLength = 4, Side = (TruncationSide)3 } }, "Side", "*TruncationOptions.Side*3*" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Invalid_options_are_rejected_naming_the_option(TokenizerOptions options, string paramName, string message)
    {
        FluentActions.Invoking(options.Validate).Should().Throw<ArgumentException>()
            .Where(e => e.ParamName == paramName).WithMessage(message);
        FluentActions.Invoking(() => MistralTokenizer.FromFile(fixtures.ModelPath("mistral"), options))
            .Should().Throw<ArgumentException>().WithMessage(message);
    }

    [Fact]
    public void Custom_pad_id_outside_the_vocabulary_is_rejected_at_load()
    {
        var options = new TokenizerOptions { PadToken = PadTokenPolicy.Custom, CustomPadId = 32000 };
        FluentActions.Invoking(() => MistralTokenizer.FromFile(fixtures.ModelPath("mistral"), options))
            .Should().Throw<ArgumentException>().WithMessage("*CustomPadId 32000*32000 pieces*");
    }
}
