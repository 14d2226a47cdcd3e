using Mistral.Eval.Prompts;

namespace Mistral.Eval.Tests.Prompts;

/// <summary>Every study template rendered and compared with the exact text from REFERENCE.md §1, written out here independently.</summary>
public class StudyPromptsTests
{
    private const string S = "I love my new GPU.";
    private const string D = "Amanda: I baked cookies.\nJerry: Sure!";

    [Fact]
    public void Zero_shot_classification_has_the_trailing_space_before_the_first_newline()
    {
        var actual = StudyPrompts.ClassificationZeroShot.Render(("newsgroup_classes", "sci.space, rec.autos"), ("sentence", S));
        var expected =
            "Classify the sentence into one of 20 classes. The list of classes is provided below, where the classes are separated by commas: " + "\n" + "\n"
            + "sci.space, rec.autos" + "\n" + "\n"
            + "From the above list of classes, select only one class that the provided sentence can be classified into. "
            + "The sentence will be delimited with triple backticks. Once again, only predict the class from the given list of classes. "
            + "Do not predict anything else." + "\n" + "\n"
            + "### Sentence: ```I love my new GPU.```" + "\n"
            + "### Class:" + "\n";
        actual.Should().Be(expected);
        actual.Should().Contain("commas: \n\n");
    }

    [Fact]
    public void Few_shot_classification_matches_exactly()
    {
        var actual = StudyPrompts.ClassificationFewShot.Render(
            ("newsgroup_classes", "a, b"), ("few_shot_samples", "Sentence: x \n Class: a \n\n"), ("sentence", S));
        var expected =
            "Classify the sentence into one of 20 classes. The list of classes is provided below, where the classes are separated by commas:" + "\n" + "\n"
            + "a, b" + "\n" + "\n"
            + "From the above list of classes, select only one class that the provided sentence can be classified into. "
            + "Once again, only predict the class from the given list of classes. Do not predict anything else. "
            + "The sentence will be delimited with triple backticks. "
            + "To help you, examples are provided of sentence and the corresponding class they belong to." + "\n" + "\n"
            + "Sentence: x " + "\n" + " Class: a " + "\n" + "\n"
            + "\n" + "\n"
            + "### Sentence: ```I love my new GPU.```" + "\n" + "### Class:" + "\n";
        actual.Should().Be(expected);
        actual.Should().NotContain("commas: \n", "only the zero-shot form has the trailing space");
    }

    [Fact]
    public void Summarization_zero_and_few_shot_match_exactly()
    {
        StudyPrompts.SummarizationZeroShot.Render(("dialogue", D)).Should().Be(
            "Summarize the following dialogue that is delimited with triple backticks." + "\n" + "\n"
            + "### Dialogue: ```Amanda: I baked cookies." + "\n" + "Jerry: Sure!```" + "\n" + "### Summary:" + "\n");

        StudyPrompts.SummarizationFewShot.Render(("few_shot_samples", "EX"), ("dialogue", D)).Should().Be(
            "Summarize the following dialogue that is delimited with triple backticks. To help you, examples of summarization are provided." + "\n" + "\n"
            + "EX" + "\n" + "\n"
            + "### Dialogue: ```Amanda: I baked cookies." + "\n" + "Jerry: Sure!```" + "\n" + "### Summary:" + "\n");
    }

    [Fact]
    public void Instruction_forms_match_exactly_with_trailing_space_in_inference()
    {
        StudyPrompts.ClassificationInstructionTrain.Render(("sentence", S), ("label", "comp.graphics")).Should().Be(
            "Classify the following sentence that is delimited with triple backticks." + "\n" + "\n"
            + "### Sentence: ```I love my new GPU.```" + "\n" + "### Class: comp.graphics" + "\n");
        StudyPrompts.ClassificationInstructionInference.Render(("sentence", S)).Should().Be(
            "Classify the following sentence that is delimited with triple backticks." + "\n" + "\n"
            + "### Sentence: ```I love my new GPU.```" + "\n" + "### Class: " + "\n");
        StudyPrompts.SummarizationInstructionTrain.Render(("dialogue", "hi"), ("summary", "greeting")).Should().Be(
            "Summarize the following dialogue that is delimited with triple backticks." + "\n" + "\n"
            + "### Dialogue: ```hi```" + "\n" + "### Summary: greeting" + "\n");
        StudyPrompts.SummarizationInstructionInference.Render(("dialogue", "hi")).Should().Be(
            "Summarize the following dialogue that is delimited with triple backticks." + "\n" + "\n"
            + "### Dialogue: ```hi```" + "\n" + "### Summary: " + "\n");
    }

    [Fact]
    public void V2_one_line_forms_match_exactly()
    {
        StudyPrompts.ClassificationV2Train.Render(("sentence", S), ("label", "sci.space")).Should().Be("### Sentence:I love my new GPU. ### Class:sci.space");
        StudyPrompts.ClassificationV2Inference.Render(("sentence", S)).Should().Be("### Sentence:I love my new GPU. ### Class:");
        StudyPrompts.SummarizationV2Train.Render(("dialogue", "hi"), ("summary", "x")).Should().Be("### Dialogue:hi ### Summary:x");
        StudyPrompts.SummarizationV2Inference.Render(("dialogue", "hi")).Should().Be("### Dialogue:hi ### Summary:");
    }

    [Fact]
    public void Few_shot_example_blocks_match_exactly()
    {
        StudyPrompts.ClassificationFewShotFormat.Render(new("txt", "lbl")).Should().Be("Sentence: txt " + "\n" + " Class: lbl " + "\n" + "\n");
        StudyPrompts.SummarizationFewShotFormat.Render(new("dlg", "sum")).Should().Be("Sentence: dlg " + "\n" + " Summary: sum " + "\n" + "\n");
    }

    [Fact]
    public void Catalog_lists_all_fourteen_templates_by_name_with_their_placeholders()
    {
        StudyPrompts.All.Should().HaveCount(14);
        StudyPrompts.Get("classification.few_shot").Placeholders.Should().Equal("newsgroup_classes", "few_shot_samples", "sentence");
        StudyPrompts.Get("summarization.v2.train").Placeholders.Should().Equal("dialogue", "summary");
        var act = () => StudyPrompts.Get("nope");
        act.Should().Throw<KeyNotFoundException>().WithMessage("*'nope'*classification.zero_shot*");
    }

    [Fact]
    public void V2_training_prompt_part_is_exactly_the_inference_prompt()
    {
        var sft = StudyPrompts.ClassificationV2Train.RenderTraining(
            new Dictionary<string, string> { ["sentence"] = S, ["label"] = "sci.space" }, "label");
        sft.Prompt.Should().Be(StudyPrompts.ClassificationV2Inference.Render(("sentence", S)));
        sft.Target.Should().Be("sci.space");
        sft.Text.Should().Be("### Sentence:I love my new GPU. ### Class:sci.space");
        sft.PromptLength.Should().Be(42);
        sft.Text[sft.PromptLength..].Should().Be("sci.space");

        var sum = StudyPrompts.SummarizationV2Train.RenderTraining(
            new Dictionary<string, string> { ["dialogue"] = "hi", ["summary"] = "x" }, "summary");
        sum.Prompt.Should().Be(StudyPrompts.SummarizationV2Inference.Render(("dialogue", "hi")));
    }

    [Fact]
    public void Instruction_training_prompt_differs_from_instruction_inference_prompt_as_in_the_study()
    {
        var sft = StudyPrompts.ClassificationInstructionTrain.RenderTraining(
            new Dictionary<string, string> { ["sentence"] = S, ["label"] = "sci.space" }, "label");
        sft.Target.Should().Be("sci.space\n");
        sft.Prompt.Should().EndWith("### Class: ");
        StudyPrompts.ClassificationInstructionInference.Render(("sentence", S)).Should().Be(sft.Prompt + "\n");
    }
}
