namespace Mistral.Eval.Parsing;

/// <summary>How a label was found in generated text.</summary>
public enum LabelMatchKind
{
    /// <summary>No label was found (the output is unparseable).</summary>
    None,

    /// <summary>The (mode-cleaned) text equals a label exactly.</summary>
    Exact,

    /// <summary>The normalized first line equals a normalized label.</summary>
    Normalized,

    /// <summary>The normalized first line starts with a normalized label followed by more words.</summary>
    NormalizedPrefix,

    /// <summary>The label at the smallest edit distance was taken.</summary>
    Closest,
}
