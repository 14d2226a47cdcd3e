namespace Mistral.Eval.Parsing;

/// <summary>Options of <see cref="LabelParser"/>.</summary>
public sealed record LabelParserOptions
{
    private readonly double _maxClosestDistance = 0.5;

    /// <summary>
    /// In <see cref="LabelParseMode.Closest"/>, the largest accepted edit distance as a fraction of the longer of the two
    /// normalized strings (0 … 1; 1 accepts any non-empty output). Default 0.5.
    /// </summary>
    public double MaxClosestDistance
    {
        get => _maxClosestDistance;
        init
        {
            if (!(value >= 0 && value <= 1))
            {
                throw new ArgumentOutOfRangeException(nameof(MaxClosestDistance), value, "MaxClosestDistance must be between 0 and 1.");
            }

            _maxClosestDistance = value;
        }
    }

    /// <summary>In the normalized modes, also accept output that starts with a label followed by more words. Default true.</summary>
    public bool AllowPrefixMatch { get; init; } = true;
}
