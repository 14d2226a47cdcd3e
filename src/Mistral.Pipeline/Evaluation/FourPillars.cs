namespace Mistral.Pipeline;

/// <summary>
/// The study's "four pillars" for one evaluation: quality (the task's headline metrics), time to train, cost to train and
/// inference cost — with the measurements behind them (throughput, memory, latency).
/// </summary>
public sealed record FourPillars
{
    /// <summary>Quality: the task's headline metrics (e.g. accuracy, macro_f1; rouge1…).</summary>
    public required IReadOnlyDictionary<string, double> Quality { get; init; }

    /// <summary>Time to train: wall time of the training run (null when the pipeline was not trained here).</summary>
    public TimeSpan? TrainingTime { get; init; }

    /// <summary>Training throughput in tokens fed per second (null when not trained here).</summary>
    public double? TrainingTokensPerSecond { get; init; }

    /// <summary>Peak memory while training (null when not trained here or not measurable); see <see cref="MemoryKind"/>.</summary>
    public long? TrainingPeakMemoryBytes { get; init; }

    /// <summary>Peak memory while evaluating (null when not measurable); see <see cref="MemoryKind"/>.</summary>
    public long? InferencePeakMemoryBytes { get; init; }

    /// <summary>What the memory figures measure, e.g. "device (CUDA, whole GPU)" or "host RSS".</summary>
    public required string MemoryKind { get; init; }

    /// <summary>Cost to train at the <see cref="CostModel"/>'s price (null without a price or without training).</summary>
    public decimal? TrainingCost { get; init; }

    /// <summary>Inference: wall time of the whole evaluation.</summary>
    public required TimeSpan InferenceTime { get; init; }

    /// <summary>Inference: examples per second over the evaluation.</summary>
    public required double ExamplesPerSecond { get; init; }

    /// <summary>Inference: generated tokens per second over the evaluation (0 when nothing was generated).</summary>
    public required double GeneratedTokensPerSecond { get; init; }

    /// <summary>Inference: median latency of one example, milliseconds.</summary>
    public required double LatencyP50Milliseconds { get; init; }

    /// <summary>Inference: 95th-percentile latency of one example, milliseconds.</summary>
    public required double LatencyP95Milliseconds { get; init; }

    /// <summary>Inference cost per 1,000 examples at the <see cref="CostModel"/>'s price (null without a price).</summary>
    public decimal? InferenceCostPer1000 { get; init; }

    /// <summary>The price used (null when none was given).</summary>
    public CostModel? Cost { get; init; }

    /// <summary>The device the work ran on, e.g. "cuda:0" or "cpu".</summary>
    public required string Device { get; init; }
}
