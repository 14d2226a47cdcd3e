using Mistral.Eval.Data;
using Mistral.Eval.Prompts;

namespace Mistral.Eval.Tests.Prompts;

public class FewShotSelectorTests
{
    private static readonly Example[] Train =
    [
        new("t0", "sci.space"), new("t1", "rec.autos"), new("t2", "sci.space"), new("t3", "alt.atheism"),
        new("t4", "rec.autos"), new("t5", "rec.autos"), new("t6", "alt.atheism"),
    ];

    [Fact]
    public void Study_classification_rule_takes_the_first_example_of_each_label_in_first_appearance_order()
    {
        FewShotSelector.FirstPerLabel(Train).Select(e => e.Input).Should().Equal("t0", "t1", "t3");
        ClassList.Render(Train.Select(e => e.Target)).Should().Be("sci.space, rec.autos, alt.atheism");
    }

    [Fact]
    public void Study_few_shot_classification_prompt_is_built_from_the_rule()
    {
        var examples = FewShotSelector.FirstPerLabel(Train);
        var samples = StudyPrompts.ClassificationFewShotFormat.RenderAll(examples);
        samples.Should().Be("Sentence: t0 \n Class: sci.space \n\nSentence: t1 \n Class: rec.autos \n\nSentence: t3 \n Class: alt.atheism \n\n");
        var prompt = StudyPrompts.ClassificationFewShot.Render(
            ("newsgroup_classes", ClassList.Render(Train.Select(e => e.Target))), ("few_shot_samples", samples), ("sentence", "q"));
        prompt.Should().Contain("belong to.\n\nSentence: t0 \n Class: sci.space \n\n").And.EndWith("alt.atheism \n\n\n\n### Sentence: ```q```\n### Class:\n");
    }

    [Fact]
    public void Study_summarization_rule_takes_the_first_two()
    {
        FewShotSelector.FirstK(Train, 2).Select(e => e.Input).Should().Equal("t0", "t1");
        FewShotSelector.FirstK(Train, 99).Should().HaveCount(7);
    }

    [Fact]
    public void Seeded_random_k_is_numpy_choice_without_replacement()
    {
        // numpy.random.RandomState(42).choice(50, size=7, replace=False) = [13, 39, 30, 45, 17, 48, 26] (stratify_reference.json).
        var fifty = Enumerable.Range(0, 50).Select(i => new Example("t" + i, "l")).ToArray();
        FewShotSelector.RandomK(fifty, 7, 42).Select(e => e.Input).Should().Equal("t13", "t39", "t30", "t45", "t17", "t48", "t26");
        FewShotSelector.RandomK(fifty, 7, 42).Should().Equal(FewShotSelector.RandomK(fifty, 7, 42));
        var act = () => FewShotSelector.RandomK(fifty, 51, 42);
        act.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("k");
    }

    [Fact]
    public void Per_label_k_takes_up_to_k_of_each_label()
    {
        FewShotSelector.PerLabel(Train, 2).Select(e => e.Input).Should().Equal("t0", "t2", "t1", "t4", "t3", "t6");
        var random = FewShotSelector.PerLabel(Train, 2, seed: 7);
        random.Should().HaveCount(6);
        random.GroupBy(e => e.Target).Select(g => g.Count()).Should().AllBeEquivalentTo(2);
        random.Select(e => e.Target).Distinct().Should().Equal("sci.space", "rec.autos", "alt.atheism");
    }
}
