namespace Mistral.Eval.Prompts;

/// <summary>The placeholder names of the study's templates.</summary>
public static class StudyPlaceholders
{
    /// <summary>The text to classify.</summary>
    public const string Sentence = "sentence";

    /// <summary>The class label (training templates and few-shot examples).</summary>
    public const string Label = "label";

    /// <summary>The dialogue to summarize.</summary>
    public const string Dialogue = "dialogue";

    /// <summary>The reference summary (training templates and few-shot examples).</summary>
    public const string Summary = "summary";

    /// <summary>The class list, rendered by <see cref="ClassList.Render"/>.</summary>
    public const string NewsgroupClasses = "newsgroup_classes";

    /// <summary>The concatenated few-shot example blocks.</summary>
    public const string FewShotSamples = "few_shot_samples";
}
