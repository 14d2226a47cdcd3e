namespace Mistral.Peft.Training;

/// <summary>One optimizer step of a <see cref="LoraTrainer"/> or <see cref="CausalLMTrainer"/> run.</summary>
/// <param name="Step">1-based over all epochs.</param>
/// <param name="Epoch">1-based.</param>
/// <param name="MicroBatches">Micro-batches accumulated into this step (fewer than the accumulation steps only at an epoch's end).</param>
/// <param name="Loss">
/// Mean loss over the step's target tokens: the sum of the token losses of all its micro-batches divided by
/// <see cref="TargetTokens"/> (the mean of its micro-batch losses when they hold equally many target tokens, as packed
/// micro-batches of equal size do).
/// </param>
/// <param name="GradNorm">Global L2 norm of the trained parameters' gradients (the adapters' for LoRA) before clipping (what HF logs as <c>grad_norm</c>).</param>
/// <param name="Tokens">Real tokens fed to the model in this step (packed: blocks × sequence length; padding not counted).</param>
/// <param name="Elapsed">
/// Wall time of the step on the host, including the read of the pending step values when this step triggered one. On an
/// asynchronous device (a GPU) the host runs ahead between reads (<see cref="TrainingOptions.ReportEverySteps"/>), so
/// steps look fast and the step that triggers a read carries the wait for the device; sums and averages over the steps
/// of a read interval, and <see cref="TrainingResult.Elapsed"/>, are right.
/// </param>
public sealed record TrainingStep(int Step, int Epoch, int MicroBatches, double Loss, double GradNorm, long Tokens, TimeSpan Elapsed)
{
    /// <summary>Tokens whose prediction is in the loss (packed: blocks × (sequence length − 1); completion: target tokens).</summary>
    public long TargetTokens { get; init; }

    /// <summary>
    /// The learning rate this step's AdamW update used: <see cref="TrainingOptions.LearningRateAt"/> for the step (HF's
    /// scheduler value for step index <see cref="Step"/> − 1). HF's logged <c>learning_rate</c> is the scheduler's value
    /// after the step, i.e. the next step's rate.
    /// </summary>
    public double LearningRate { get; init; }
}
