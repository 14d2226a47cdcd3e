namespace Mistral.Peft.Training;

/// <summary>
/// How the learning rate changes over training: Hugging Face's <c>lr_scheduler_type</c> values, each a multiplier of
/// <see cref="TrainingOptions.LearningRate"/> per optimizer step, computed as transformers' <c>LambdaLR</c> schedulers
/// compute it. With step index s (0 for the first optimizer step), T the run's optimizer steps and W the warm-up steps
/// (<see cref="TrainingOptions.WarmupStepsFor"/>), every warm-up schedule is s / max(1, W) while s &lt; W — so the first
/// step of a warmed-up run has learning rate 0 — and then as listed below.
/// </summary>
public enum LearningRateSchedule
{
    /// <summary>
    /// The same learning rate at every step (<c>"constant"</c>, the study's). A warm-up (<see cref="TrainingOptions.WarmupRatio"/>,
    /// <see cref="TrainingOptions.WarmupSteps"/>) is ignored, as HF's <c>constant</c> scheduler ignores <c>warmup_ratio</c>.
    /// </summary>
    Constant = 0,

    /// <summary>Linear warm-up, then 1 (<c>"constant_with_warmup"</c>, <c>get_constant_schedule_with_warmup</c>).</summary>
    ConstantWithWarmup = 1,

    /// <summary>
    /// Linear warm-up, then a linear decay max(0, (T − s) / max(1, T − W)) (<c>"linear"</c>,
    /// <c>get_linear_schedule_with_warmup</c>; HF's default schedule). The last step's rate is lr / (T − W), not 0.
    /// </summary>
    Linear = 2,

    /// <summary>
    /// Linear warm-up, then half a cosine wave: with p = (s − W) / max(1, T − W), max(0, ½ (1 + cos(π · 0.5 · 2 · p)))
    /// (<c>"cosine"</c>, <c>get_cosine_schedule_with_warmup</c> with its default <c>num_cycles</c> 0.5).
    /// </summary>
    Cosine = 3,
}
