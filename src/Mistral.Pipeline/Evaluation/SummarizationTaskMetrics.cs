using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Mistral.Eval.Metrics;

namespace Mistral.Pipeline;

/// <summary>ROUGE F-measures ×100 as rouge_score computes them (stemmed), as the exact mean with a bootstrap 95% interval.</summary>
/// <param name="Rouge">Per ROUGE type (rouge1, rouge2, rougeL, rougeLsum): the aggregate in percent.</param>
/// <param name="Examples">How many predictions were scored.</param>
public sealed class SummarizationTaskMetrics(IReadOnlyDictionary<string, RougeAggregate> Rouge, int Examples) : TaskMetrics
{
    /// <summary>Per ROUGE type, the aggregate in percent.</summary>
    public IReadOnlyDictionary<string, RougeAggregate> Rouge { get; } = Rouge;

    /// <summary>How many predictions were scored.</summary>
    public int Examples { get; } = Examples;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, double> Headline =>
        Rouge.ToDictionary(kv => kv.Key, kv => kv.Value.Mean.FMeasure, StringComparer.Ordinal);

    /// <inheritdoc />
    public override string ToMarkdown()
    {
        var sb = new StringBuilder("| ROUGE | F (mean) | 95% interval | precision | recall |\n|---|---:|---|---:|---:|\n");
        foreach (var (name, a) in Rouge)
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"| {name} | {a.Mean.FMeasure:F2} | {a.Low.FMeasure:F2} – {a.High.FMeasure:F2} | {a.Mean.Precision:F2} | {a.Mean.Recall:F2} |\n");
        }

        return sb.ToString();
    }

    /// <inheritdoc />
    public override JsonObject ToJson()
    {
        var o = new JsonObject { ["examples"] = Examples };
        foreach (var (name, a) in Rouge)
        {
            o[name] = new JsonObject
            {
                ["f_mean"] = a.Mean.FMeasure, ["f_low"] = a.Low.FMeasure, ["f_mid"] = a.Mid.FMeasure, ["f_high"] = a.High.FMeasure,
                ["precision_mean"] = a.Mean.Precision, ["recall_mean"] = a.Mean.Recall,
            };
        }

        return o;
    }
}
