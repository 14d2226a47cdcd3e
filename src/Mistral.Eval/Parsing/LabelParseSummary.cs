namespace Mistral.Eval.Parsing;

/// <summary>The labels found in a batch of generated texts, with how many were unparseable.</summary>
/// <param name="Mode">The mode used.</param>
/// <param name="Results">One result per generated text, in order.</param>
public sealed record LabelParseSummary(LabelParseMode Mode, IReadOnlyList<LabelParseResult> Results)
{
    /// <summary>How many outputs matched no label.</summary>
    public int Unparseable => Results.Count(r => !r.IsParsed);

    /// <summary>Outputs per match kind (every kind present, zero when none).</summary>
    public IReadOnlyDictionary<LabelMatchKind, int> CountsByMatch =>
        Enum.GetValues<LabelMatchKind>().ToDictionary(k => k, k => Results.Count(r => r.Match == k));

    /// <summary>The predictions to score (see <see cref="LabelParseResult.Prediction"/>), in order.</summary>
    public IReadOnlyList<string> Predictions => Results.Select(r => r.Prediction).ToArray();

    /// <summary>A one-line account, e.g. "Normalized: 95 of 100 parsed (Exact 80, Normalized 10, NormalizedPrefix 5), 5 unparseable".</summary>
    /// <returns>The description.</returns>
    public string Describe()
    {
        var counts = CountsByMatch.Where(kv => kv.Key != LabelMatchKind.None && kv.Value > 0).Select(kv => $"{kv.Key} {kv.Value}");
        return $"{Mode}: {Results.Count - Unparseable} of {Results.Count} parsed ({string.Join(", ", counts)}), {Unparseable} unparseable";
    }
}
