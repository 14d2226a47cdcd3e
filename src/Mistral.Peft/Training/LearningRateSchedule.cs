namespace Mistral.Peft.Training;

/// <summary>How the learning rate changes over training.</summary>
public enum LearningRateSchedule
{
    /// <summary>
    /// The same learning rate at every step (Hugging Face's <c>lr_scheduler_type="constant"</c>, the study's). A warm-up
    /// ratio is ignored, as HF's <c>constant</c> scheduler ignores <c>warmup_ratio</c>.
    /// </summary>
    Constant = 0,
}
