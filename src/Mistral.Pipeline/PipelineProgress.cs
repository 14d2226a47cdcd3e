using Mistral.Peft.Training;

namespace Mistral.Pipeline;

/// <summary>What the pipeline is doing.</summary>
public enum PipelineStage
{
    /// <summary>Reading the checkpoint (and quantizing it).</summary>
    Loading,

    /// <summary>Tokenizing and packing the training texts.</summary>
    Preparing,

    /// <summary>Training the adapter.</summary>
    Training,

    /// <summary>Generating and scoring predictions.</summary>
    Evaluating,

    /// <summary>Writing files.</summary>
    Saving,
}

/// <summary>Reported by the pipeline as long work advances.</summary>
/// <param name="Stage">The current stage.</param>
/// <param name="Done">Units done in this stage (tensors, steps, examples).</param>
/// <param name="Total">Units in this stage (0 when unknown).</param>
/// <param name="Message">A short human-readable line.</param>
public sealed record PipelineProgress(PipelineStage Stage, int Done, int Total, string Message)
{
    /// <summary>While training: the trainer's own report (loss, gradient norm, tokens/s).</summary>
    public TrainingProgress? Training { get; init; }

    /// <summary>Fraction of the stage done, in [0, 1] (0 when the total is unknown).</summary>
    public double Fraction => Total > 0 ? Math.Clamp((double)Done / Total, 0, 1) : 0;
}
