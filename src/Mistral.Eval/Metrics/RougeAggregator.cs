namespace Mistral.Eval.Metrics;

/// <summary>
/// Aggregates per-example ROUGE scores into their mean and a bootstrap confidence interval, the way
/// rouge_score's <c>BootstrapAggregator</c> does: for each ROUGE type, <see cref="BootstrapOptions.Samples"/>
/// resamples of the examples with replacement, the mean of each, and the percentiles of those means
/// with numpy's default linear interpolation.
/// </summary>
/// <remarks>
/// The resampling uses <see cref="Random"/> seeded with <see cref="BootstrapOptions.Seed"/>, not
/// numpy's generator, so Low/Mid/High differ from Python's by sampling noise (of the order of the
/// interval's width divided by √Samples); the mean is exact.
/// </remarks>
public sealed class RougeAggregator
{
    private readonly BootstrapOptions _options;

    /// <summary>Creates an aggregator.</summary>
    /// <param name="options">Bootstrap options; null for the defaults (1000 samples, 95 %, seed 42).</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public RougeAggregator(BootstrapOptions? options = null)
    {
        _options = options ?? new BootstrapOptions();
        _options.Validate();
    }

    /// <summary>Aggregates per-example scores (for example those of <see cref="RougeScorer.ScoreAll(IReadOnlyList{string}, IReadOnlyList{string}, IProgress{int}?, CancellationToken)"/>).</summary>
    /// <param name="scores">Per-example scores; every example must have the same ROUGE types.</param>
    /// <returns>One aggregate per ROUGE type, in the order of the first example's types.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="scores"/> or an element is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="scores"/> is empty, or the examples' types differ.</exception>
    public IReadOnlyDictionary<string, RougeAggregate> Aggregate(IReadOnlyList<IReadOnlyDictionary<string, RougeScore>> scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (scores.Count == 0)
        {
            throw new ArgumentException($"{nameof(scores)} must contain at least one example.", nameof(scores));
        }

        IReadOnlyDictionary<string, RougeScore> first = scores[0]
            ?? throw new ArgumentNullException(nameof(scores), $"{nameof(scores)}[0] is null.");
        string[] types = first.Keys.ToArray();
        for (int i = 1; i < scores.Count; i++)
        {
            IReadOnlyDictionary<string, RougeScore> example = scores[i]
                ?? throw new ArgumentNullException(nameof(scores), $"{nameof(scores)}[{i}] is null.");
            if (example.Count != types.Length || types.Any(t => !example.ContainsKey(t)))
            {
                throw new ArgumentException(
                    $"{nameof(scores)}[{i}] has ROUGE types [{string.Join(", ", example.Keys)}] but {nameof(scores)}[0] has [{string.Join(", ", types)}].",
                    nameof(scores));
            }
        }

        var random = new Random(_options.Seed);
        var result = new Dictionary<string, RougeAggregate>(types.Length, StringComparer.Ordinal);
        foreach (string type in types)
        {
            var values = new RougeScore[scores.Count];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = scores[i][type];
            }

            result.Add(type, AggregateOne(values, random));
        }

        return result;
    }

    private RougeAggregate AggregateOne(RougeScore[] values, Random random)
    {
        int n = values.Length;
        RougeScore mean = MeanOf(values);
        int samples = _options.Samples;
        var precision = new double[samples];
        var recall = new double[samples];
        var fmeasure = new double[samples];
        for (int s = 0; s < samples; s++)
        {
            double p = 0, r = 0, f = 0;
            for (int i = 0; i < n; i++)
            {
                RougeScore drawn = values[random.Next(n)];
                p += drawn.Precision;
                r += drawn.Recall;
                f += drawn.FMeasure;
            }

            precision[s] = p / n;
            recall[s] = r / n;
            fmeasure[s] = f / n;
        }

        Array.Sort(precision);
        Array.Sort(recall);
        Array.Sort(fmeasure);
        double delta = (1 - _options.ConfidenceLevel) / 2;
        RougeScore At(double q) => new(Percentile(precision, q), Percentile(recall, q), Percentile(fmeasure, q));
        return new RougeAggregate(mean, At(100 * delta), At(50), At(100 * (1 - delta)));
    }

    private static RougeScore MeanOf(RougeScore[] values)
    {
        double p = 0, r = 0, f = 0;
        foreach (RougeScore v in values)
        {
            p += v.Precision;
            r += v.Recall;
            f += v.FMeasure;
        }

        return new RougeScore(p / values.Length, r / values.Length, f / values.Length);
    }

    /// <summary>numpy's <c>percentile(method="linear")</c> of sorted values, with its interpolation formula.</summary>
    internal static double Percentile(double[] sorted, double q)
    {
        double position = q / 100 * (sorted.Length - 1);
        int below = (int)Math.Floor(position);
        if (below >= sorted.Length - 1)
        {
            return sorted[^1];
        }

        double fraction = position - below;
        double a = sorted[below];
        double b = sorted[below + 1];
        double difference = b - a;
        return fraction >= 0.5 ? b - difference * (1 - fraction) : a + difference * fraction;
    }
}
