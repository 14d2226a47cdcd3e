namespace Mistral.Core.Tokenization;

/// <summary>Settings of a <see cref="MistralTokenizer"/>: special tokens added by encoding, pad token, padding and truncation.</summary>
public sealed record TokenizerOptions
{
    /// <summary>Prepend <c>&lt;s&gt;</c> (BOS) when encoding. Default true, as Mistral's tokenizer.</summary>
    public bool AddBeginningOfSentence { get; init; } = true;

    /// <summary>Append <c>&lt;/s&gt;</c> (EOS) when encoding. Default false.</summary>
    public bool AddEndOfSentence { get; init; }

    /// <summary>Which id pads batches. Default <see cref="PadTokenPolicy.None"/> (Mistral has no pad token).</summary>
    public PadTokenPolicy PadToken { get; init; } = PadTokenPolicy.None;

    /// <summary>The pad id when <see cref="PadToken"/> is <see cref="PadTokenPolicy.Custom"/>; must be null otherwise.</summary>
    public int? CustomPadId { get; init; }

    /// <summary>How batches are padded. Default: right side, to the longest row.</summary>
    public PaddingOptions Padding { get; init; } = new();

    /// <summary>Truncation applied by Encode and EncodeBatch; null (default) keeps every token.</summary>
    public TruncationOptions? Truncation { get; init; }

    /// <summary>The study's training setting: BOS added, pad = eos, padding on the right.</summary>
    public static TokenizerOptions StudyTraining => new() { PadToken = PadTokenPolicy.EndOfSentence };

    /// <summary>For batched generation: BOS added, pad = eos, padding on the left.</summary>
    public static TokenizerOptions BatchedGeneration => new()
    {
        PadToken = PadTokenPolicy.EndOfSentence,
        Padding = new PaddingOptions { Side = PaddingSide.Left },
    };

    /// <summary>Checks the options; the exception names the offending option.</summary>
    /// <exception cref="ArgumentException">An option is out of range or inconsistent with another.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(PadToken))
        {
            throw new ArgumentException($"TokenizerOptions.PadToken has the undefined value {(int)PadToken}.", nameof(PadToken));
        }

        if (PadToken == PadTokenPolicy.Custom && CustomPadId is null)
        {
            throw new ArgumentException("TokenizerOptions.CustomPadId is required when PadToken is Custom.", nameof(CustomPadId));
        }

        if (PadToken != PadTokenPolicy.Custom && CustomPadId is not null)
        {
            throw new ArgumentException(
                $"TokenizerOptions.CustomPadId ({CustomPadId}) is only used when PadToken is Custom, but PadToken is {PadToken}.",
                nameof(CustomPadId));
        }

        if (CustomPadId is < 0)
        {
            throw new ArgumentException($"TokenizerOptions.CustomPadId must be a token id (>= 0), got {CustomPadId}.", nameof(CustomPadId));
        }

        if (Padding is null)
        {
            throw new ArgumentException("TokenizerOptions.Padding must not be null.", nameof(Padding));
        }

        Padding.Validate();
        Truncation?.Validate();
    }
}
