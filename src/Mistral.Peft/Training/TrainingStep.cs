namespace Mistral.Peft.Training;

/// <summary>One optimizer step of a <see cref="LoraTrainer"/> run.</summary>
/// <param name="Step">1-based over all epochs.</param>
/// <param name="Epoch">1-based.</param>
/// <param name="MicroBatches">Micro-batches accumulated into this step (fewer than the accumulation steps only at an epoch's end).</param>
/// <param name="Loss">Mean loss over the step's predicted tokens (the mean of its micro-batch losses when they are equally sized).</param>
/// <param name="GradNorm">Global L2 norm of the adapter gradients before clipping (what HF logs as <c>grad_norm</c>).</param>
/// <param name="Tokens">Tokens fed to the model in this step (blocks × sequence length).</param>
/// <param name="Elapsed">Wall time of the step.</param>
public sealed record TrainingStep(int Step, int Epoch, int MicroBatches, double Loss, double GradNorm, long Tokens, TimeSpan Elapsed);
