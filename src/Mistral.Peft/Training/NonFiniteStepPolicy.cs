namespace Mistral.Peft.Training;

/// <summary>What the trainers do with an optimizer step whose loss or gradient norm is not finite (NaN or ±∞).</summary>
public enum NonFiniteStepPolicy
{
    /// <summary>Stop the run with a <see cref="TrainingDivergedException"/> naming the step (the default).</summary>
    Stop,

    /// <summary>
    /// Discard the step's gradients without an optimizer update and go on (the step still counts for the schedule and the
    /// data position); <see cref="TrainingResult.SkippedSteps"/> counts them. A run whose epoch has no finite step stops
    /// with a <see cref="TrainingDivergedException"/>.
    /// </summary>
    Skip,
}
