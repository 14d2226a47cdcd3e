namespace Mistral.Peft.Training;

/// <summary>
/// Thrown by <see cref="LoraTrainer.Train"/> and <see cref="CausalLMTrainer.Train"/> when training diverges: a step's loss
/// or gradient norm is not finite (see <see cref="TrainingOptions.NonFiniteStep"/>), or the trained weights are not
/// finite when a checkpoint is due (the checkpoint is then not written). No checkpoint with non-finite weights is ever written.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What diverged, at which step, and what to try.</param>
    /// <param name="step">The 1-based optimizer step that diverged.</param>
    /// <param name="partialResult">The finite steps read before it, epoch losses of finished epochs and checkpoints written.</param>
    /// <param name="weightsFinite">Whether the trained parameters still hold finite weights (the diverged step was not applied).</param>
    public TrainingDivergedException(string message, int step, TrainingResult partialResult, bool weightsFinite)
        : base(message)
    {
        Step = step;
        PartialResult = partialResult ?? throw new ArgumentNullException(nameof(partialResult));
        WeightsFinite = weightsFinite;
    }

    /// <summary>The 1-based optimizer step that diverged.</summary>
    public int Step { get; }

    /// <summary>What the run did before it diverged.</summary>
    public TrainingResult PartialResult { get; }

    /// <summary>
    /// True when the diverged step was caught before its update (the trained parameters keep the last finite step's
    /// weights); false when it was found later (on an accelerator the step values are read in batches), so the weights
    /// may already be non-finite.
    /// </summary>
    public bool WeightsFinite { get; }
}
