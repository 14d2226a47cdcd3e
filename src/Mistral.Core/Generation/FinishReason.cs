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
