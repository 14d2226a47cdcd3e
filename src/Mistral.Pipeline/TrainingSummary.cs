using Mistral.Peft.Training;

namespace Mistral.Pipeline;

/// <summary>What <see cref="MistralPipeline.Train(IReadOnlyList{Mistral.Eval.Data.Example})"/> did.</summary>
public sealed record TrainingSummary
{
    /// <summary>True when the run was cancelled: the adapter holds the steps taken so far (and a checkpoint was saved when an output folder was set).</summary>
    public required bool Cancelled { get; init; }

    /// <summary>Optimizer steps taken.</summary>
    public required int StepsCompleted { get; init; }

    /// <summary>Optimizer steps the full run would take.</summary>
    public required int TotalSteps { get; init; }

    /// <summary>Training examples given.</summary>
    public required int Examples { get; init; }

    /// <summary>How the texts became training data, e.g. "12 blocks of 512 tokens from 400 texts; 93 trailing tokens dropped".</summary>
    public required string Data { get; init; }

    /// <summary>Wall time of training (loading and packing excluded).</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>Tokens fed to the model.</summary>
    public required long Tokens { get; init; }

    /// <summary>Tokens per second of <see cref="Elapsed"/>.</summary>
    public double TokensPerSecond => Elapsed.TotalSeconds > 0 ? Tokens / Elapsed.TotalSeconds : 0;

    /// <summary>Peak memory while training (null when it could not be read); see <see cref="MemoryKind"/>.</summary>
    public long? PeakMemoryBytes { get; init; }

    /// <summary>What <see cref="PeakMemoryBytes"/> measures.</summary>
    public required string MemoryKind { get; init; }

    /// <summary>Every optimizer step (loss, gradient norm, tokens, time); empty when cancelled before the first step's report.</summary>
    public required IReadOnlyList<TrainingStep> Steps { get; init; }

    /// <summary>Mean loss of each completed epoch.</summary>
    public required IReadOnlyList<double> EpochLosses { get; init; }

    /// <summary>Adapter checkpoints written (PEFT format), in order; the last is the cancellation checkpoint when <see cref="Cancelled"/>.</summary>
    public required IReadOnlyList<string> Checkpoints { get; init; }

    /// <summary>The trainer's settings.</summary>
    public required LoraTrainingOptions Options { get; init; }
}
