namespace Mistral.Peft.Training;

/// <summary>
/// Reported by <see cref="LoraTrainer"/> and <see cref="CausalLMTrainer"/> for each optimizer step, in step order, when the step's values are read from the
/// device: every <see cref="TrainingOptions.ReportEverySteps"/> steps (default: every
/// <see cref="TrainingOptions.LogEverySteps"/>), at each epoch's end and at the end. Reports arrive on the training
/// thread, in bursts of the steps read at once.
/// </summary>
/// <param name="Step">The optimizer step (1-based, over all epochs).</param>
/// <param name="TotalSteps">Optimizer steps the whole run will take.</param>
/// <param name="Epoch">The step's epoch (1-based).</param>
/// <param name="Loss">The step's mean training loss over its target tokens.</param>
/// <param name="GradNorm">The global L2 norm of the trained parameters' gradients before clipping.</param>
/// <param name="TokensPerSecond">Training throughput up to that step (tokens fed to the model per second of training).</param>
public sealed record TrainingProgress(int Step, int TotalSteps, int Epoch, double Loss, double GradNorm, double TokensPerSecond)
{
    /// <summary>The learning rate the step's AdamW update used (<see cref="TrainingStep.LearningRate"/>).</summary>
    public double LearningRate { get; init; }
}
