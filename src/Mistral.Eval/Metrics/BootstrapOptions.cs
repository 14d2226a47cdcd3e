namespace Mistral.Eval.Metrics;

/// <summary>Options of the bootstrap confidence interval computed by <see cref="RougeAggregator"/>.</summary>
public sealed record BootstrapOptions
{
    /// <summary>Number of bootstrap resamples (rouge_score's default 1000). Must be at least 1.</summary>
    public int Samples { get; init; } = 1000;

    /// <summary>Two-sided confidence level, strictly between 0 and 1 (default 0.95).</summary>
    public double ConfidenceLevel { get; init; } = 0.95;

    /// <summary>Seed of the resampling random generator; the same seed gives the same interval.</summary>
    public int Seed { get; init; } = 42;

    /// <summary>Throws if an option is invalid.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it.</exception>
    public void Validate()
    {
        if (Samples < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Samples), Samples,
                $"{nameof(BootstrapOptions)}.{nameof(Samples)} must be at least 1.");
        }

        if (!(ConfidenceLevel > 0 && ConfidenceLevel < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(ConfidenceLevel), ConfidenceLevel,
                $"{nameof(BootstrapOptions)}.{nameof(ConfidenceLevel)} must be strictly between 0 and 1.");
        }
    }
}
