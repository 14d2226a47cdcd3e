namespace Mistral.Peft.Training;

/// <summary>What a <see cref="LoraTrainer"/> or <see cref="CausalLMTrainer"/> run did.</summary>
/// <param name="Steps">Every optimizer step, in order.</param>
/// <param name="EpochLosses">Mean step loss of each epoch.</param>
/// <param name="Tokens">Tokens fed to the model over the run.</param>
/// <param name="Elapsed">Wall time of the run (checkpoint saving excluded).</param>
/// <param name="Checkpoints">Folders of the checkpoints written (adapters for LoRA, whole models for full-parameter training), in order (empty without a checkpoint folder).</param>
public sealed record TrainingResult(
    IReadOnlyList<TrainingStep> Steps,
    IReadOnlyList<double> EpochLosses,
    long Tokens,
    TimeSpan Elapsed,
    IReadOnlyList<string> Checkpoints)
{
    /// <summary>Training throughput: <see cref="Tokens"/> per second of <see cref="Elapsed"/>.</summary>
    public double TokensPerSecond => Elapsed.TotalSeconds > 0 ? Tokens / Elapsed.TotalSeconds : 0;

    /// <summary>
    /// Optimizer steps skipped because their loss or gradient norm was not finite (<see cref="NonFiniteStepPolicy.Skip"/>);
    /// they are not in <see cref="Steps"/>, whose step numbers then have gaps.
    /// </summary>
    public int SkippedSteps { get; init; }
}
