namespace Mistral.Core.Tokenization;

/// <summary>
/// Cuts encoded sequences to at most <see cref="MaxLength"/> ids, counting the BOS/EOS ids that encoding adds;
/// those are kept and only text tokens are dropped (as Hugging Face tokenizers do).
/// </summary>
public sealed record TruncationOptions
{
    /// <summary>The maximum number of ids per sequence, BOS/EOS included.</summary>
    public required int MaxLength { get; init; }

    /// <summary>Which end loses tokens. Default <see cref="TruncationSide.Right"/>.</summary>
    public TruncationSide Side { get; init; } = TruncationSide.Right;

    /// <summary>Checks the options; the exception names the offending option.</summary>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    public void Validate()
    {
        if (MaxLength <= 0)
        {
            throw new ArgumentException($"TruncationOptions.MaxLength must be positive, got {MaxLength}.", nameof(MaxLength));
        }

        if (!Enum.IsDefined(Side))
        {
            throw new ArgumentException($"TruncationOptions.Side has the undefined value {(int)Side}.", nameof(Side));
        }
    }
}
