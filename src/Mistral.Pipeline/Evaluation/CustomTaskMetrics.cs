using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Mistral.Pipeline;

/// <summary>Named scores of a user-defined task (what a custom <see cref="PipelineTask.Score"/> can return).</summary>
public sealed class CustomTaskMetrics : TaskMetrics
{
    private readonly Dictionary<string, double> _values;

    /// <summary>Creates the metrics.</summary>
    /// <param name="values">Score names and values; every value must be finite.</param>
    /// <exception cref="ArgumentException">A value is NaN or infinite (the message names it).</exception>
    public CustomTaskMetrics(IReadOnlyDictionary<string, double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        foreach (var (k, v) in values)
        {
            if (!double.IsFinite(v))
            {
                throw new ArgumentException($"Metric '{k}' is {v}; metrics must be finite.", nameof(values));
            }
        }

        _values = new Dictionary<string, double>(values, StringComparer.Ordinal);
    }

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, double> Headline => _values;

    /// <inheritdoc />
    public override string ToMarkdown()
    {
        var sb = new StringBuilder("| metric | value |\n|---|---:|\n");
        foreach (var (k, v) in _values)
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {k} | {v:F4} |\n");
        }

        return sb.ToString();
    }

    /// <inheritdoc />
    public override JsonObject ToJson()
    {
        var o = new JsonObject();
        foreach (var (k, v) in _values)
        {
            o[k] = v;
        }

        return o;
    }
}
