namespace Mistral.Core.Tokenization;

/// <summary>How <see cref="MistralTokenizer.EncodeBatch(IReadOnlyList{string})"/> pads rows to one length.</summary>
public sealed record PaddingOptions
{
    /// <summary>Where pad tokens go. Default <see cref="PaddingSide.Right"/> (training); use Left for batched generation.</summary>
    public PaddingSide Side { get; init; } = PaddingSide.Right;

    /// <summary>Pad to the longest row (default) or to <see cref="MaxLength"/>.</summary>
    public PaddingStrategy Strategy { get; init; } = PaddingStrategy.Longest;

    /// <summary>The row length for <see cref="PaddingStrategy.MaxLength"/>; must be null otherwise.</summary>
    public int? MaxLength { get; init; }

    /// <summary>If set, the padded length is rounded up to a multiple of this (e.g. 8 for tensor cores).</summary>
    public int? PadToMultipleOf { get; init; }

    /// <summary>Checks the options; the exception names the offending option.</summary>
    /// <exception cref="ArgumentException">An option is out of range or inconsistent with another.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Side))
        {
            throw new ArgumentException($"PaddingOptions.Side has the undefined value {(int)Side}.", nameof(Side));
        }

        if (!Enum.IsDefined(Strategy))
        {
            throw new ArgumentException($"PaddingOptions.Strategy has the undefined value {(int)Strategy}.", nameof(Strategy));
        }

        if (Strategy == PaddingStrategy.MaxLength && MaxLength is null)
        {
            throw new ArgumentException("PaddingOptions.MaxLength is required when Strategy is MaxLength.", nameof(MaxLength));
        }

        if (Strategy != PaddingStrategy.MaxLength && MaxLength is not null)
        {
            throw new ArgumentException(
                $"PaddingOptions.MaxLength ({MaxLength}) is only used with Strategy MaxLength, but Strategy is {Strategy}.", nameof(MaxLength));
        }

        if (MaxLength is <= 0)
        {
            throw new ArgumentException($"PaddingOptions.MaxLength must be positive, got {MaxLength}.", nameof(MaxLength));
        }

        if (PadToMultipleOf is <= 0)
        {
            throw new ArgumentException($"PaddingOptions.PadToMultipleOf must be positive, got {PadToMultipleOf}.", nameof(PadToMultipleOf));
        }
    }
}
