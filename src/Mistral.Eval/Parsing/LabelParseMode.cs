namespace Mistral.Eval.Parsing;

/// <summary>How generated text is turned into a class label.</summary>
public enum LabelParseMode
{
    /// <summary>The study's rule for the fine-tuned model: the raw continuation must equal a label exactly (ordinal).</summary>
    Exact,

    /// <summary>The study's rule for the base model: newlines removed, then Python-<c>strip()</c>ped, must equal a label exactly.</summary>
    StudyBaseline,

    /// <summary>
    /// First non-blank line, lowercased, every run of characters that are not letters or digits made one space,
    /// trimmed; matches a label normalized the same way, or starts with one followed by a space (longest label wins).
    /// </summary>
    Normalized,

    /// <summary>
    /// <see cref="Normalized"/>, else the label at the smallest Levenshtein (character edit) distance from the normalized
    /// first line, accepted when distance ÷ the longer length ≤ <see cref="LabelParserOptions.MaxClosestDistance"/> (ties: first label).
    /// </summary>
    Closest,
}
