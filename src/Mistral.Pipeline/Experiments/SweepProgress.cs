namespace Mistral.Pipeline.Experiments;

/// <summary>What happened to a run.</summary>
public enum SweepProgressKind
{
    /// <summary>Its completed folder exists with the same id: not run again.</summary>
    Skipped,

    /// <summary>It starts (loading the model).</summary>
    Started,

    /// <summary>It advances: <see cref="SweepProgress.Pipeline"/> says how (loading, training step, evaluation batch).</summary>
    Working,

    /// <summary>Its folder is complete.</summary>
    Completed,
}

/// <summary>Reported by <see cref="SweepRunner"/> as a sweep advances.</summary>
/// <param name="Kind">What happened.</param>
/// <param name="Run">The run.</param>
/// <param name="Position">1-based position of the run among this shard's runs.</param>
/// <param name="Count">This shard's runs.</param>
public sealed record SweepProgress(SweepProgressKind Kind, SweepRunPlan Run, int Position, int Count)
{
    /// <summary>While <see cref="SweepProgressKind.Working"/>: the pipeline's own report (stage, step, loss, tokens/s).</summary>
    public PipelineProgress? Pipeline { get; init; }

    /// <summary>Runs of this shard completed so far in this call.</summary>
    public int Completed { get; init; }

    /// <summary>Runs of this shard skipped so far in this call (already complete).</summary>
    public int Skipped { get; init; }

    /// <summary>Time since this run started (zero for a skipped run).</summary>
    public TimeSpan Elapsed { get; init; }

    /// <summary>The run's folder once <see cref="SweepProgressKind.Completed"/> or <see cref="SweepProgressKind.Skipped"/>.</summary>
    public string? Folder { get; init; }
}

/// <summary>What one <see cref="SweepRunner.RunAsync"/> call did.</summary>
/// <param name="Folder">The results folder.</param>
/// <param name="Planned">Every run of the sweep, in order.</param>
/// <param name="Shard">The shard that ran.</param>
/// <param name="Executed">Runs this call ran to completion.</param>
/// <param name="Skipped">Runs of this shard that were already complete.</param>
public sealed record SweepRunSummary(string Folder, IReadOnlyList<SweepRunPlan> Planned, SweepShard Shard, IReadOnlyList<SweepRunPlan> Executed, IReadOnlyList<SweepRunPlan> Skipped);

/// <summary>How <see cref="SweepRunner"/> runs a sweep.</summary>
public sealed record SweepRunOptions
{
    /// <summary>Which runs this process takes (<c>--shard i/n</c>); default all.</summary>
    public SweepShard Shard { get; init; } = SweepShard.All;

    /// <summary>The price written into each run's report (the results table takes its own price); null for none.</summary>
    public CostModel? Cost { get; init; }

    /// <summary>Save each fine-tuned run's adapter (PEFT format) in its folder. Default true.</summary>
    public bool SaveAdapter { get; init; } = true;

    /// <summary>Checks the options; throws naming the invalid one.</summary>
    /// <returns>This instance.</returns>
    public SweepRunOptions Validate()
    {
        Cost?.Validate();
        return this;
    }
}
