namespace Mistral.Core.Generation;

/// <summary>Timing of a generation call, for the study's "inference cost".</summary>
/// <param name="PrefillMilliseconds">Time to process the prompts and choose the first token of each row (time to first token).</param>
/// <param name="DecodeMilliseconds">Time of the incremental steps, each from feeding its tokens to reading the next ones back on the host.</param>
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
