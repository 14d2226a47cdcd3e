namespace Mistral.Peft.Training;

/// <summary>
/// Thrown by <see cref="LoraTrainer.Train"/> and <see cref="CausalLMTrainer.Train"/> when its token is cancelled: an <see cref="OperationCanceledException"/> that
/// also tells how far the run got. The trained parameters keep every step in <see cref="PartialResult"/>.
/// </summary>
public sealed class TrainingCanceledException : OperationCanceledException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="partialResult">The steps taken before cancellation (all of them, read from the device).</param>
    /// <param name="stepsCompleted">Optimizer steps applied.</param>
    /// <param name="totalSteps">Optimizer steps the whole run would have taken.</param>
    /// <param name="token">The cancelled token.</param>
    public TrainingCanceledException(TrainingResult partialResult, int stepsCompleted, int totalSteps, CancellationToken token)
        : base($"Training was cancelled after {stepsCompleted} of {totalSteps} optimizer steps; the trained parameters keep those steps.", token)
    {
        PartialResult = partialResult ?? throw new ArgumentNullException(nameof(partialResult));
        StepsCompleted = stepsCompleted;
        TotalSteps = totalSteps;
    }

    /// <summary>What the run did before it was cancelled (every applied step, epoch losses of finished epochs, checkpoints written).</summary>
    public TrainingResult PartialResult { get; }

    /// <summary>Optimizer steps applied to the trained parameters.</summary>
    public int StepsCompleted { get; }

    /// <summary>Optimizer steps the whole run would have taken.</summary>
    public int TotalSteps { get; }
}
