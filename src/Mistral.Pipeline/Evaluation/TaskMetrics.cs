using System.Text.Json.Nodes;

namespace Mistral.Pipeline;

/// <summary>A task's scores for one evaluation; the built-in tasks return <see cref="ClassificationTaskMetrics"/> or <see cref="SummarizationTaskMetrics"/>.</summary>
public abstract class TaskMetrics
{
    /// <summary>The main numbers by name (e.g. <c>accuracy</c>, <c>macro_f1</c>, <c>rouge1</c>), for tables and comparisons.</summary>
    public abstract IReadOnlyDictionary<string, double> Headline { get; }

    /// <summary>The scores as Markdown (a table or two).</summary>
    /// <returns>The Markdown text.</returns>
    public abstract string ToMarkdown();

    /// <summary>The scores as a JSON object.</summary>
    /// <returns>The JSON node.</returns>
    public abstract JsonObject ToJson();
}
