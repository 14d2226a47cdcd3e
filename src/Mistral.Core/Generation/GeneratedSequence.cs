namespace Mistral.Core.Generation;

/// <summary>One generated sequence.</summary>
/// <param name="PromptTokenIds">The prompt's ids (no padding).</param>
/// <param name="TokenIds">The new ids (without padding; the EOS token, when produced, is included).</param>
/// <param name="Text">The decoded new text (when a tokenizer was given; cut before a stop string), else null.</param>
/// <param name="FinishReason">Why it stopped.</param>
public sealed record GeneratedSequence(IReadOnlyList<int> PromptTokenIds, IReadOnlyList<int> TokenIds, string? Text, FinishReason FinishReason);
