using Mistral.Eval.Data;

namespace Mistral.Pipeline;

/// <summary>What a task knows beyond one example: the class labels (for prompts, parsing and metrics) and the few-shot pool.</summary>
/// <param name="Labels">The task's labels in first-appearance order (empty for tasks without labels, such as summarization).</param>
/// <param name="FewShotPool">Examples few-shot prompts draw from (usually the training set; may be empty).</param>
public sealed record TaskContext(IReadOnlyList<string> Labels, IReadOnlyList<Example> FewShotPool)
{
    /// <summary>A context with no labels and no few-shot pool.</summary>
    public static TaskContext Empty { get; } = new([], []);
}
