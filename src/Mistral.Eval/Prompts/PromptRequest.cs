namespace Mistral.Eval.Prompts;

/// <summary>
/// A prompt to build and fit: a template, its values, and optionally which placeholder holds the input text
/// (for truncation) and which receives the few-shot blocks (for dropping examples).
/// </summary>
/// <param name="Template">The prompt template.</param>
/// <param name="Values">Values for every placeholder except <see cref="FewShotPlaceholder"/>.</param>
public sealed record PromptRequest(PromptTemplate Template, IReadOnlyDictionary<string, string> Values)
{
    /// <summary>The placeholder holding the input text that <see cref="PromptFitPolicy.TruncateInput"/> may shorten (e.g. <c>sentence</c>).</summary>
    public string? InputPlaceholder { get; init; }

    /// <summary>The placeholder that receives the concatenated <see cref="FewShotBlocks"/> (e.g. <c>few_shot_samples</c>).</summary>
    public string? FewShotPlaceholder { get; init; }

    /// <summary>The rendered few-shot example blocks, in prompt order (see <see cref="FewShotFormat.RenderBlocks"/>).</summary>
    public IReadOnlyList<string> FewShotBlocks { get; init; } = [];
}
