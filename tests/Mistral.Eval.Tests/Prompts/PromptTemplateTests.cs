using Mistral.Eval.Prompts;

namespace Mistral.Eval.Tests.Prompts;

public class PromptTemplateTests
{
    [Fact]
    public void Renders_repeated_placeholders_and_escaped_braces()
    {
        var t = new PromptTemplate("t", "{{json}} {a}-{b}-{a}}}");
        t.Placeholders.Should().Equal("a", "b");
        t.Render(("a", "1"), ("b", "{x}")).Should().Be("{json} 1-{x}-1}");
    }

    [Fact]
    public void Missing_value_names_the_placeholder_and_template()
    {
        var t = new PromptTemplate("mine", "{sentence} {label}");
        var act = () => t.Render(("sentence", "s"));
        act.Should().Throw<PromptTemplateException>()
            .WithMessage("Template 'mine' needs a value for placeholder {label}.")
            .Which.Placeholder.Should().Be("label");
    }

    [Fact]
    public void Unknown_value_names_the_placeholder_and_lists_the_known_ones()
    {
        var t = new PromptTemplate("mine", "{sentence}");
        var act = () => t.Render(("sentence", "s"), ("sentense", "typo"));
        act.Should().Throw<PromptTemplateException>()
            .WithMessage("Template 'mine' has no placeholder {sentense}; its placeholders are {sentence}.")
            .Which.Placeholder.Should().Be("sentense");
    }

    [Theory]
    [InlineData("a {b", "*'{' at offset 2 is never closed*")]
    [InlineData("a } b", "*unmatched '}' at offset 2*")]
    [InlineData("{1x}", "*'{1x}' at offset 0 is not a valid placeholder name*")]
    [InlineData("{}", "*'{}' at offset 0 is not a valid placeholder name*")]
    [InlineData("{a b}", "*'{a b}'*not a valid placeholder name*")]
    public void Malformed_templates_fail_at_parse_time_naming_the_offset(string text, string message)
    {
        var act = () => new PromptTemplate("bad", text);
        act.Should().Throw<PromptTemplateException>().WithMessage(message);
    }

    [Fact]
    public void Users_add_their_own_training_template_and_get_the_mask_boundary()
    {
        var t = new PromptTemplate("chat", "<s>[INST] {question} [/INST] {answer}</s>");
        var sft = t.RenderTraining(new Dictionary<string, string> { ["question"] = "2+2?", ["answer"] = "4" }, "answer");
        sft.Prompt.Should().Be("<s>[INST] 2+2? [/INST] ");
        sft.Target.Should().Be("4</s>");
        sft.PromptLength.Should().Be(23);

        var twice = new PromptTemplate("twice", "{a}{a}");
        var act = () => twice.RenderTraining(new Dictionary<string, string> { ["a"] = "x" }, "a");
        act.Should().Throw<PromptTemplateException>().WithMessage("*{a} must occur exactly once, found 2*");
    }
}
