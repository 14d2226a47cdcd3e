namespace Mistral.Peft.Training;

/// <summary>Reported by <see cref="LoraTrainer"/> after each optimizer step.</summary>
/// <param name="Step">The optimizer step just taken (1-based, over all epochs).</param>
/// <param name="TotalSteps">Optimizer steps the whole run will take.</param>
/// <param name="Epoch">The current epoch (1-based).</param>
/// <param name="Loss">The step's mean training loss.</param>
/// <param name="GradNorm">The global L2 norm of the adapter gradients before clipping.</param>
/// <param name="TokensPerSecond">Training throughput so far (tokens fed to the model per second of training).</param>
public sealed record TrainingProgress(int Step, int TotalSteps, int Epoch, double Loss, double GradNorm, double TokensPerSecond);
