namespace Mistral.Core.Generation;

/// <summary>Why a sequence stopped.</summary>
public enum FinishReason
{
    /// <summary>It produced an end-of-sequence token.</summary>
    EndOfSequence,

    /// <summary>It reached <see cref="GenerationOptions.MaxNewTokens"/>.</summary>
    Length,

    /// <summary>Its text contained a stop string.</summary>
    StopString,
}

/// <summary>One generated sequence.</summary>
/// <param name="PromptTokenIds">The prompt's ids (no padding).</param>
/// <param name="TokenIds">The new ids (without padding; the EOS token, when produced, is included).</param>
/// <param name="Text">The decoded new text (when a tokenizer was given; cut before a stop string), else null.</param>
/// <param name="FinishReason">Why it stopped.</param>
public sealed record GeneratedSequence(IReadOnlyList<int> PromptTokenIds, IReadOnlyList<int> TokenIds, string? Text, FinishReason FinishReason);

/// <summary>Timing of a generation call, for the study's "inference cost".</summary>
/// <param name="PrefillMilliseconds">Time to process the prompts and produce the first logits.</param>
/// <param name="DecodeMilliseconds">Time of the incremental steps.</param>
/// <param name="DecodeSteps">Number of incremental steps.</param>
/// <param name="GeneratedTokens">New real tokens over all sequences (the first of each row comes from the prefill's logits).</param>
/// <param name="DecodeTokens">New real tokens chosen from the logits of the incremental steps (what the decode time paid for).</param>
/// <param name="StepMilliseconds">Wall time of each incremental step, in order (length <paramref name="DecodeSteps"/>).</param>
public sealed record GenerationTiming(double PrefillMilliseconds, double DecodeMilliseconds, int DecodeSteps, int GeneratedTokens, int DecodeTokens,
    IReadOnlyList<double> StepMilliseconds)
{
    /// <summary>Tokens per second of the incremental steps (all sequences together): <see cref="DecodeTokens"/> / decode time.</summary>
    public double DecodeTokensPerSecond => DecodeMilliseconds > 0 ? DecodeTokens / (DecodeMilliseconds / 1000.0) : 0;
}

/// <summary>The result of a (batched) generation.</summary>
/// <param name="Sequences">One per prompt, in order.</param>
/// <param name="Timing">Prefill and decode timing.</param>
public sealed record GenerationResult(IReadOnlyList<GeneratedSequence> Sequences, GenerationTiming Timing);
