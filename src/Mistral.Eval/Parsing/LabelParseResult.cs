namespace Mistral.Eval.Parsing;

/// <summary>The label found in one generated text.</summary>
/// <param name="Generated">The generated text as given.</param>
/// <param name="Label">The label found, or null when the output is unparseable.</param>
/// <param name="Match">How it was found.</param>
/// <param name="Prediction">
/// What to score: <see cref="Label"/> when found; otherwise the text as the study scored it (raw for
/// <see cref="LabelParseMode.Exact"/>, newline-removed and stripped for the other modes) — a wrong prediction.
/// </param>
/// <param name="EditDistance">For <see cref="LabelMatchKind.Closest"/>, the edit distance; otherwise null.</param>
public sealed record LabelParseResult(string Generated, string? Label, LabelMatchKind Match, string Prediction, int? EditDistance = null)
{
    /// <summary>Whether a label was found.</summary>
    public bool IsParsed => Label is not null;
}
