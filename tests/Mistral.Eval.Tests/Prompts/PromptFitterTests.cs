using Mistral.Eval.Prompts;

namespace Mistral.Eval.Tests.Prompts;

public class PromptFitterTests
{
    /// <summary>A fake tokenizer: one token per whitespace-separated word.</summary>
    private sealed class WordCounter : ITokenCounter
    {
        public int Calls { get; private set; }

        public int CountTokens(string text)
        {
            Calls++;
            return text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
        }
    }

    private static readonly PromptTemplate Template = new("fs", "Q {few_shot_samples} S: {sentence} A:");

    // Template words: "Q", "S:", "A:" = 3; each block 4 words; sentence 10 words.
    private static readonly string[] Blocks = ["e1 a b c ", "e2 a b c ", "e3 a b c ", "e4 a b c "];
    private const string Sentence = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10";

    private static PromptRequest Request() => new(Template, new Dictionary<string, string> { ["sentence"] = Sentence })
    {
        FewShotPlaceholder = "few_shot_samples",
        InputPlaceholder = "sentence",
        FewShotBlocks = Blocks,
    };

    [Fact]
    public void Measure_reports_length_and_fit()
    {
        var r = new PromptFitter(new WordCounter(), new PromptBudget(40, 5)).Measure(Request());
        r.PromptTokens.Should().Be(29); // 3 + 16 + 10
        r.Fits.Should().BeTrue();
        r.Budget.MaxPromptTokens.Should().Be(35);
        new PromptFitter(new WordCounter(), new PromptBudget(30, 5)).Measure(Request()).Fits.Should().BeFalse();
    }

    [Fact]
    public void Fail_policy_says_by_how_much_and_suggests_the_fits()
    {
        var fitter = new PromptFitter(new WordCounter(), new PromptBudget(30, 5));
        var act = () => fitter.Fit(Request(), PromptFitPolicy.Fail);
        var ex = act.Should().Throw<PromptTooLongException>().Which;
        ex.Message.Should().Be(
            "Prompt 'fs' is 29 tokens; with max_new_tokens 5 it needs 34 but the context length is 30 (over by 4 tokens). "
            + "Policy Fail: nothing was shortened. Use PromptFitPolicy.DropFewShotExamples (the prompt has 4 few-shot examples) or TruncateInput to fit it, or a model with a longer context.");
        ex.TokensOver.Should().Be(4);
    }

    [Fact]
    public void Drop_policy_drops_examples_from_the_end_until_it_fits()
    {
        // Budget 25 prompt tokens: 29 → 25 after dropping one block.
        var r = new PromptFitter(new WordCounter(), new PromptBudget(30, 5)).Fit(Request(), PromptFitPolicy.DropFewShotExamples);
        r.PromptTokens.Should().Be(25);
        r.FewShotExamplesKept.Should().Be(3);
        r.FewShotExamplesDropped.Should().Be(1);
        r.Prompt.Should().Be("Q e1 a b c e2 a b c e3 a b c  S: " + Sentence + " A:");
        r.Describe().Should().Contain("dropped 1 of 4 few-shot examples");

        var tight = new PromptFitter(new WordCounter(), new PromptBudget(20, 5)).Fit(Request(), PromptFitPolicy.DropFewShotExamples);
        tight.FewShotExamplesKept.Should().Be(0);
        tight.PromptTokens.Should().Be(13);
    }

    [Fact]
    public void Drop_policy_fails_when_no_examples_is_not_enough()
    {
        var act = () => new PromptFitter(new WordCounter(), new PromptBudget(15, 5)).Fit(Request(), PromptFitPolicy.DropFewShotExamples);
        act.Should().Throw<PromptTooLongException>().WithMessage("*even with all 4 few-shot examples dropped the prompt is 13 tokens*");
    }

    [Fact]
    public void Truncate_policy_keeps_the_longest_input_prefix_that_fits()
    {
        // 10 prompt tokens allowed with no examples: template 3 + 7 input words.
        var req = Request() with { FewShotBlocks = [], };
        var r = new PromptFitter(new WordCounter(), new PromptBudget(15, 5)).Fit(req, PromptFitPolicy.TruncateInput);
        r.PromptTokens.Should().Be(10);
        r.Prompt.Should().StartWith("Q  S: w1 w2 w3 w4 w5 w6 w7").And.EndWith(" A:");
        r.InputCharactersRemoved.Should().Be(Sentence.Length - r.Prompt.Length + "Q  S: ".Length + " A:".Length);
        // "w1 … w7 w" (a partial 8th word) would be 11 tokens, so the cut is right after w7 plus optional space.
        r.Prompt.Should().BeOneOf("Q  S: w1 w2 w3 w4 w5 w6 w7 A:", "Q  S: w1 w2 w3 w4 w5 w6 w7  A:");
    }

    [Fact]
    public void Drop_then_truncate_drops_all_examples_before_cutting_the_input()
    {
        var r = new PromptFitter(new WordCounter(), new PromptBudget(15, 5)).Fit(Request(), PromptFitPolicy.DropFewShotExamplesThenTruncateInput);
        r.FewShotExamplesDropped.Should().Be(4);
        r.PromptTokens.Should().Be(10);
        r.InputCharactersRemoved.Should().BeGreaterThan(0);
        r.OriginalPromptTokens.Should().Be(29);
    }

    [Fact]
    public void Truncation_never_splits_a_surrogate_pair()
    {
        // Counter: one token per UTF-16 unit. "ab😀" cut to fit 4 units must not end with a lone high surrogate.
        var counter = new LengthCounter();
        var t = new PromptTemplate("x", "{s}");
        var req = new PromptRequest(t, new Dictionary<string, string> { ["s"] = "ab\U0001F600cd" }) { InputPlaceholder = "s" };
        var r = new PromptFitter(counter, new PromptBudget(4, 1)).Fit(req, PromptFitPolicy.TruncateInput);
        r.Prompt.Should().Be("ab");
        r.InputCharactersRemoved.Should().Be(4);
    }

    [Fact]
    public void Template_alone_too_long_is_reported()
    {
        var req = Request() with { FewShotBlocks = [] };
        var act = () => new PromptFitter(new WordCounter(), new PromptBudget(4, 2)).Fit(req, PromptFitPolicy.TruncateInput);
        act.Should().Throw<PromptTooLongException>().WithMessage("*even with an empty {sentence} the prompt is 3 tokens; the template alone does not fit*");
    }

    [Fact]
    public void Policies_needing_a_placeholder_say_so_and_budget_validates()
    {
        var req = new PromptRequest(Template, new Dictionary<string, string> { ["sentence"] = "s", ["few_shot_samples"] = "" });
        var act = () => new PromptFitter(new WordCounter(), new PromptBudget(40, 5)).Fit(req, PromptFitPolicy.DropFewShotExamples);
        act.Should().Throw<ArgumentException>().WithMessage("*DropFewShotExamples needs PromptRequest.FewShotPlaceholder*");
        var budget = () => new PromptBudget(512, 512);
        budget.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("maxNewTokens");
    }

    private sealed class LengthCounter : ITokenCounter
    {
        public int CountTokens(string text) => text.Length;
    }
}
