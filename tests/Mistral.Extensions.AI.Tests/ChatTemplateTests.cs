using Microsoft.Extensions.AI;
using Mistral.Core.Generation;

namespace Mistral.Extensions.AI.Tests;

/// <summary>The prompt formats and the mapping of <see cref="ChatOptions"/>, without a model.</summary>
public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] ThreeTurns =
    [
        new(ChatRole.System, "You are a packaging assistant."),
        new(ChatRole.User, "What is dh-cargo?"),
        new(ChatRole.Assistant, "A debhelper add-on for Rust crates."),
        new(ChatRole.User, "And debcargo?"),
    ];

    [Fact]
    public void InstructRenderingOfAThreeTurnConversationIsMistralsTemplate()
    {
        MistralChatTemplate.Render(ThreeTurns, MistralChatFormat.Instruct).Should().Be(
            "<s>[INST] You are a packaging assistant.\n\nWhat is dh-cargo? [/INST]A debhelper add-on for Rust crates.</s>[INST] And debcargo? [/INST]");
    }

    [Fact]
    public void PlainRenderingJoinsTheTexts()
    {
        MistralChatTemplate.Render(ThreeTurns, MistralChatFormat.Plain).Should().Be(
            "<s>You are a packaging assistant.\nWhat is dh-cargo?\nA debhelper add-on for Rust crates.\nAnd debcargo?");
    }

    [Fact]
    public void InstructRejectsTurnsThatDoNotAlternate()
    {
        var act = () => MistralChatTemplate.Render([new(ChatRole.User, "a"), new(ChatRole.User, "b")], MistralChatFormat.Instruct);
        act.Should().Throw<ArgumentException>().WithMessage("*alternating*");
    }

    [Fact]
    public void ChatOptionsMapToGenerationOptions()
    {
        GenerationOptions defaults = GenerationOptions.Greedy with { MaxNewTokens = 256 };
        MistralChatClient.ToGenerationOptions(null, defaults).Should().BeSameAs(defaults);

        GenerationOptions g = MistralChatClient.ToGenerationOptions(new ChatOptions
        {
            Temperature = 0.7f, TopP = 0.9f, TopK = 40, MaxOutputTokens = 12, StopSequences = ["\n\n"], Seed = 42,
        }, defaults);
        g.DoSample.Should().BeTrue();
        g.Temperature.Should().BeApproximately(0.7, 1e-6);
        g.TopP.Should().BeApproximately(0.9, 1e-6);
        g.TopK.Should().Be(40);
        g.MaxNewTokens.Should().Be(12);
        g.StopStrings.Should().Equal("\n\n");
        g.Seed.Should().Be(42UL);

        MistralChatClient.ToGenerationOptions(new ChatOptions { Temperature = 0 }, defaults with { DoSample = true }).DoSample.Should().BeFalse();
        MistralChatClient.ToGenerationOptions(new ChatOptions(), defaults with { DoSample = true }).DoSample.Should().BeFalse();
        var invalid = () => MistralChatClient.ToGenerationOptions(new ChatOptions { TopP = 0 }, defaults);
        invalid.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*TopP*");
    }
}
