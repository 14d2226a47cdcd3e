namespace Mistral.Core.Generation;

/// <summary>The result of a (batched) generation.</summary>
/// <param name="Sequences">One per prompt, in order.</param>
/// <param name="Timing">Prefill and decode timing.</param>
public sealed record GenerationResult(IReadOnlyList<GeneratedSequence> Sequences, GenerationTiming Timing);
