using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Mistral.Eval.Metrics;

namespace Mistral.Pipeline;

/// <summary>
/// Classification scores two ways: the study's generate-and-parse rule (with how many outputs matched no label) and
/// label likelihood (argmax of log p(label | prompt) over the task's labels; never unparseable).
/// </summary>
/// <param name="Generated">scikit-learn-equal report of the parsed generations (null when generation was skipped).</param>
/// <param name="Unparseable">Generated outputs that matched no label (scored as wrong).</param>
/// <param name="Likelihood">scikit-learn-equal report of the label-likelihood predictions (null when not run).</param>
/// <param name="Labels">The task's label set the reports were computed over.</param>
public sealed class ClassificationTaskMetrics(ClassificationReport? Generated, int Unparseable, ClassificationReport? Likelihood, IReadOnlyList<string> Labels) : TaskMetrics
{
    /// <summary>The report of the parsed generations, or null.</summary>
    public ClassificationReport? Generated { get; } = Generated;

    /// <summary>Generated outputs that matched no label.</summary>
    public int Unparseable { get; } = Unparseable;

    /// <summary>The report of the label-likelihood predictions, or null.</summary>
    public ClassificationReport? Likelihood { get; } = Likelihood;

    /// <summary>The task's labels.</summary>
    public IReadOnlyList<string> Labels { get; } = Labels;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, double> Headline
    {
        get
        {
            var d = new Dictionary<string, double>(StringComparer.Ordinal);
            if (Generated is not null)
            {
                d["accuracy"] = Generated.Accuracy;
                d["macro_f1"] = Generated.Macro.F1;
                d["micro_f1"] = Generated.Micro.F1;
                d["unparseable"] = Unparseable;
            }

            if (Likelihood is not null)
            {
                d["likelihood_accuracy"] = Likelihood.Accuracy;
                d["likelihood_macro_f1"] = Likelihood.Macro.F1;
            }

            return d;
        }
    }

    /// <inheritdoc />
    public override string ToMarkdown()
    {
        var sb = new StringBuilder();
        sb.Append("| scoring | accuracy | macro F1 | micro F1 | micro precision | micro recall | unparseable |\n");
        sb.Append("|---|---:|---:|---:|---:|---:|---:|\n");
        if (Generated is not null)
        {
            Row(sb, "generate + parse (study)", Generated, Unparseable.ToString(CultureInfo.InvariantCulture));
        }

        if (Likelihood is not null)
        {
            Row(sb, "label likelihood", Likelihood, "—");
        }

        return sb.ToString();
    }

    /// <inheritdoc />
    public override JsonObject ToJson()
    {
        var o = new JsonObject { ["labels"] = new JsonArray([.. Labels.Select(l => (JsonNode?)JsonValue.Create(l))]) };
        if (Generated is not null)
        {
            o["generated"] = ReportJson(Generated);
            o["unparseable"] = Unparseable;
        }

        if (Likelihood is not null)
        {
            o["likelihood"] = ReportJson(Likelihood);
        }

        return o;
    }

    private static void Row(StringBuilder sb, string name, ClassificationReport r, string unparseable) =>
        sb.Append(CultureInfo.InvariantCulture,
            $"| {name} | {r.Accuracy:F4} | {r.Macro.F1:F4} | {r.Micro.F1:F4} | {r.Micro.Precision:F4} | {r.Micro.Recall:F4} | {unparseable} |\n");

    private static JsonObject ReportJson(ClassificationReport r) => new()
    {
        ["accuracy"] = r.Accuracy,
        ["macro"] = Averaged(r.Macro),
        ["micro"] = Averaged(r.Micro),
        ["weighted"] = Averaged(r.Weighted),
        ["per_label"] = new JsonArray([.. r.PerLabel.Select(l => (JsonNode?)new JsonObject
        {
            ["label"] = l.Label, ["precision"] = l.Precision, ["recall"] = l.Recall, ["f1"] = l.F1, ["support"] = l.Support,
        })]),
        ["confusion_labels"] = new JsonArray([.. r.Labels.Select(l => (JsonNode?)JsonValue.Create(l))]),
        ["confusion_matrix"] = new JsonArray([.. r.ConfusionMatrix.Select(row => (JsonNode?)new JsonArray([.. row.Select(c => (JsonNode?)JsonValue.Create(c))]))]),
    };

    private static JsonObject Averaged(AveragedMetrics a) => new()
    {
        ["precision"] = Finite(a.Precision), ["recall"] = Finite(a.Recall), ["f1"] = Finite(a.F1), ["support"] = a.Support,
    };

    private static JsonNode? Finite(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;
}
