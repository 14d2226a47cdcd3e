namespace Mistral.Eval.Prompts;

/// <summary>
/// The study's prompt templates, byte for byte (trailing spaces and newlines included), by name.
/// The zero- and few-shot templates say "one of 20 classes" as the study wrote them; write your own
/// <see cref="PromptTemplate"/> for another class count.
/// </summary>
public static class StudyPrompts
{
    /// <summary>Zero-shot classification (base model; note the space before the first newline).</summary>
    public static PromptTemplate ClassificationZeroShot { get; } = new(
        "classification.zero_shot",
        "Classify the sentence into one of 20 classes. The list of classes is provided below, where the classes are separated by commas: \n\n"
        + "{newsgroup_classes}\n\n"
        + "From the above list of classes, select only one class that the provided sentence can be classified into. The sentence will be delimited with triple backticks. Once again, only predict the class from the given list of classes. Do not predict anything else.\n\n"
        + "### Sentence: ```{sentence}```\n### Class:\n");

    /// <summary>Few-shot classification (base model); <c>{few_shot_samples}</c> from <see cref="ClassificationFewShotExample"/>.</summary>
    public static PromptTemplate ClassificationFewShot { get; } = new(
        "classification.few_shot",
        "Classify the sentence into one of 20 classes. The list of classes is provided below, where the classes are separated by commas:\n\n"
        + "{newsgroup_classes}\n\n"
        + "From the above list of classes, select only one class that the provided sentence can be classified into. Once again, only predict the class from the given list of classes. Do not predict anything else. The sentence will be delimited with triple backticks. To help you, examples are provided of sentence and the corresponding class they belong to.\n\n"
        + "{few_shot_samples}\n\n"
        + "### Sentence: ```{sentence}```\n### Class:\n");

    /// <summary>Zero-shot summarization (base model).</summary>
    public static PromptTemplate SummarizationZeroShot { get; } = new(
        "summarization.zero_shot",
        "Summarize the following dialogue that is delimited with triple backticks.\n\n### Dialogue: ```{dialogue}```\n### Summary:\n");

    /// <summary>Few-shot summarization (base model); <c>{few_shot_samples}</c> from <see cref="SummarizationFewShotExample"/>.</summary>
    public static PromptTemplate SummarizationFewShot { get; } = new(
        "summarization.few_shot",
        "Summarize the following dialogue that is delimited with triple backticks. To help you, examples of summarization are provided.\n\n"
        + "{few_shot_samples}\n\n### Dialogue: ```{dialogue}```\n### Summary:\n");

    /// <summary>One few-shot classification example block (spaces around the newlines as the study wrote them).</summary>
    public static PromptTemplate ClassificationFewShotExample { get; } = new(
        "classification.few_shot_example", "Sentence: {sentence} \n Class: {label} \n\n");

    /// <summary>One few-shot summarization example block (the study's word is "Sentence").</summary>
    public static PromptTemplate SummarizationFewShotExample { get; } = new(
        "summarization.few_shot_example", "Sentence: {dialogue} \n Summary: {summary} \n\n");

    /// <summary>Instruction (long) classification training text; defined but unused by the study.</summary>
    public static PromptTemplate ClassificationInstructionTrain { get; } = new(
        "classification.instruction.train",
        "Classify the following sentence that is delimited with triple backticks.\n\n### Sentence: ```{sentence}```\n### Class: {label}\n");

    /// <summary>
    /// Instruction (long) classification inference prompt; ends in <c>"### Class: \n"</c>, so it is not the
    /// training text's prompt part (which ends in <c>"### Class: "</c>) — as in the study.
    /// </summary>
    public static PromptTemplate ClassificationInstructionInference { get; } = new(
        "classification.instruction.inference",
        "Classify the following sentence that is delimited with triple backticks.\n\n### Sentence: ```{sentence}```\n### Class: \n");

    /// <summary>Instruction (long) summarization training text; defined but unused by the study.</summary>
    public static PromptTemplate SummarizationInstructionTrain { get; } = new(
        "summarization.instruction.train",
        "Summarize the following dialogue that is delimited with triple backticks.\n\n### Dialogue: ```{dialogue}```\n### Summary: {summary}\n");

    /// <summary>Instruction (long) summarization inference prompt (ends in <c>"### Summary: \n"</c>).</summary>
    public static PromptTemplate SummarizationInstructionInference { get; } = new(
        "summarization.instruction.inference",
        "Summarize the following dialogue that is delimited with triple backticks.\n\n### Dialogue: ```{dialogue}```\n### Summary: \n");

    /// <summary>The one-line "v2" classification training text the study fine-tuned on.</summary>
    public static PromptTemplate ClassificationV2Train { get; } = new("classification.v2.train", "### Sentence:{sentence} ### Class:{label}");

    /// <summary>The one-line "v2" classification inference prompt used with the fine-tuned model.</summary>
    public static PromptTemplate ClassificationV2Inference { get; } = new("classification.v2.inference", "### Sentence:{sentence} ### Class:");

    /// <summary>The one-line "v2" summarization training text the study fine-tuned on.</summary>
    public static PromptTemplate SummarizationV2Train { get; } = new("summarization.v2.train", "### Dialogue:{dialogue} ### Summary:{summary}");

    /// <summary>The one-line "v2" summarization inference prompt used with the fine-tuned model.</summary>
    public static PromptTemplate SummarizationV2Inference { get; } = new("summarization.v2.inference", "### Dialogue:{dialogue} ### Summary:");

    /// <summary>The study's few-shot classification example format: input → <c>{sentence}</c>, target → <c>{label}</c>.</summary>
    public static FewShotFormat ClassificationFewShotFormat { get; } =
        new(ClassificationFewShotExample, StudyPlaceholders.Sentence, StudyPlaceholders.Label);

    /// <summary>The study's few-shot summarization example format: input → <c>{dialogue}</c>, target → <c>{summary}</c>.</summary>
    public static FewShotFormat SummarizationFewShotFormat { get; } =
        new(SummarizationFewShotExample, StudyPlaceholders.Dialogue, StudyPlaceholders.Summary);

    /// <summary>Every study template by name.</summary>
    public static IReadOnlyDictionary<string, PromptTemplate> All { get; } = new[]
    {
        ClassificationZeroShot, ClassificationFewShot, SummarizationZeroShot, SummarizationFewShot,
        ClassificationFewShotExample, SummarizationFewShotExample,
        ClassificationInstructionTrain, ClassificationInstructionInference,
        SummarizationInstructionTrain, SummarizationInstructionInference,
        ClassificationV2Train, ClassificationV2Inference, SummarizationV2Train, SummarizationV2Inference,
    }.ToDictionary(t => t.Name, StringComparer.Ordinal);

    /// <summary>Returns the study template called <paramref name="name"/>.</summary>
    /// <param name="name">A key of <see cref="All"/>.</param>
    /// <returns>The template.</returns>
    /// <exception cref="KeyNotFoundException">No study template has that name; the message lists the names.</exception>
    public static PromptTemplate Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return All.TryGetValue(name, out var t)
            ? t
            : throw new KeyNotFoundException($"No study prompt named '{name}'. Known: {string.Join(", ", All.Keys)}.");
    }
}
