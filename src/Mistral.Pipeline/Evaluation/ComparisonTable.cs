using System.Globalization;
using System.Text;

namespace Mistral.Pipeline;

/// <summary>
/// One Markdown table comparing evaluations of the same task side by side — the study's Table 2 shape: one row per
/// method (zero-shot, few-shot, fine-tuned), the task's quality columns, then the four pillars.
/// </summary>
public static class ComparisonTable
{
    /// <summary>Renders the reports as one table, in the order given.</summary>
    /// <param name="reports">Evaluations of one task (e.g. zero-shot, few-shot and fine-tuned on the same test set).</param>
    /// <returns>The Markdown table.</returns>
    /// <exception cref="ArgumentException">No report, or reports of different tasks.</exception>
    public static string ToMarkdown(params EvaluationReport[] reports)
    {
        ArgumentNullException.ThrowIfNull(reports);
        if (reports.Length == 0)
        {
            throw new ArgumentException("At least one report is needed.", nameof(reports));
        }

        if (reports.Select(r => r.Task).Distinct(StringComparer.Ordinal).Count() > 1)
        {
            throw new ArgumentException($"Reports of different tasks cannot share a table: {string.Join(", ", reports.Select(r => r.Task).Distinct())}.", nameof(reports));
        }

        var ci = CultureInfo.InvariantCulture;
        var quality = reports.SelectMany(r => r.Metrics.Headline.Keys).Distinct(StringComparer.Ordinal).ToArray();
        var sb = new StringBuilder();
        sb.Append("| method | examples | ").Append(string.Join(" | ", quality))
          .Append(" | time to train | training tokens/s | peak memory (train / infer) | latency p50 / p95 | examples/s | cost to train | cost per 1,000 |\n");
        sb.Append("|---|---:|").Append(string.Concat(quality.Select(_ => "---:|"))).Append("---:|---:|---|---|---:|---:|---:|\n");
        foreach (var r in reports)
        {
            var p = r.Pillars;
            sb.Append(ci, $"| {r.Mode} | {r.Predictions.Count} | ");
            sb.Append(string.Join(" | ", quality.Select(q => r.Metrics.Headline.TryGetValue(q, out double v) ? Format(q, v) : "—")));
            sb.Append(ci, $" | {(p.TrainingTime is TimeSpan t ? string.Create(ci, $"{t.TotalSeconds:0.#} s") : "—")}");
            sb.Append(ci, $" | {(p.TrainingTokensPerSecond is double tps ? tps.ToString("N0", ci) : "—")}");
            sb.Append(ci, $" | {Gib(p.TrainingPeakMemoryBytes)} / {Gib(p.InferencePeakMemoryBytes)}");
            sb.Append(ci, $" | {p.LatencyP50Milliseconds:0} / {p.LatencyP95Milliseconds:0} ms | {p.ExamplesPerSecond:0.##}");
            sb.Append(ci, $" | {Money(p.TrainingCost, p.Cost)} | {Money(p.InferenceCostPer1000, p.Cost)} |\n");
        }

        return sb.ToString();

        string Gib(long? b) => b is long v ? string.Create(ci, $"{v / (1024.0 * 1024 * 1024):0.##} GiB") : "—";
        string Money(decimal? m, CostModel? c) => m is decimal v && c is not null ? string.Create(ci, $"{v:0.####} {c.Currency}") : "—";
    }

    private static string Format(string name, double value) =>
        name == "unparseable" ? value.ToString("0", CultureInfo.InvariantCulture)
        : name.StartsWith("rouge", StringComparison.Ordinal) ? value.ToString("0.00", CultureInfo.InvariantCulture)
        : value.ToString("0.0000", CultureInfo.InvariantCulture);
}
