using Mistral.Eval.Data;

namespace Mistral.Pipeline.Experiments;

/// <summary>One run of a sweep, resolved: its settings (swept or taken from the base pipeline), its id and folder name.</summary>
public sealed record SweepRunPlan
{
    /// <summary>Position in the sweep (what <c>--shard i/n</c> divides).</summary>
    public required int Index { get; init; }

    /// <summary>SHA-256 (hex) of the canonical JSON of the resolved configuration, data identity included: equal ids mean equal runs.</summary>
    public required string Id { get; init; }

    /// <summary>The run's folder name under <c>runs/</c>: a readable summary of its settings and the id's first 12 characters.</summary>
    public required string Name { get; init; }

    /// <summary>How it is evaluated.</summary>
    public required EvaluationMode Mode { get; init; }

    /// <summary>The training fraction; null for the whole set (or a zero-shot run, which uses no training data).</summary>
    public double? Fraction { get; init; }

    /// <summary>Training examples the run uses (its subsample; the few-shot pool; 0 for zero-shot).</summary>
    public required int TrainingSamples { get; init; }

    /// <summary>LoRA rank (fine-tuned runs).</summary>
    public int? R { get; init; }

    /// <summary>LoRA alpha (fine-tuned runs).</summary>
    public double? Alpha { get; init; }

    /// <summary>LoRA dropout (fine-tuned runs).</summary>
    public double? Dropout { get; init; }

    /// <summary>LoRA target modules (fine-tuned runs).</summary>
    public IReadOnlyList<string>? TargetModules { get; init; }

    /// <summary>Training epochs (fine-tuned runs).</summary>
    public int? Epochs { get; init; }

    /// <summary>Learning rate (fine-tuned runs).</summary>
    public double? LearningRate { get; init; }

    /// <summary>The canonical JSON whose SHA-256 is <see cref="Id"/> (sorted keys, no whitespace).</summary>
    public required string CanonicalConfiguration { get; init; }

    /// <summary>The run's training examples (subsample / few-shot pool).</summary>
    internal IReadOnlyList<Example> Train { get; init; } = [];

    /// <summary>The run's pipeline (a clone of the base with the run's settings).</summary>
    internal MistralPipeline? Pipeline { get; init; }
}
