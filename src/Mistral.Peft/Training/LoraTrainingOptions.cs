namespace Mistral.Peft.Training;

/// <summary>
/// Settings of <see cref="LoraTrainer"/>, named after Hugging Face <c>TrainingArguments</c>. Defaults are the study's
/// (batch 4, accumulation 2, lr 2e-4 constant, max grad norm 0.3, gradient checkpointing) and HF's AdamW defaults
/// (betas 0.9/0.999, eps 1e-8, weight decay 0). Call <see cref="Validate"/> (the trainer does) to get an exception
/// naming the first invalid option.
/// </summary>
/// <remarks>
/// The study used bitsandbytes' paged 32-bit AdamW; TorchSharp's <c>torch.optim.AdamW</c> performs the same update
/// (32-bit state) without paging the state to host memory.
/// </remarks>
public sealed record LoraTrainingOptions
{
    /// <summary>Passes over the data; at least 1. Default 1.</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Sequences (packed blocks or completion examples) per micro-batch (one forward/backward); at least 1. Default 4.</summary>
    public int PerDeviceBatchSize { get; init; } = 4;

    /// <summary>Micro-batches whose gradients are summed before each optimizer step; at least 1. Default 2.</summary>
    public int GradientAccumulationSteps { get; init; } = 2;

    /// <summary>AdamW learning rate; positive and finite. Default 2e-4.</summary>
    public double LearningRate { get; init; } = 2e-4;

    /// <summary>The learning-rate schedule; only <see cref="LearningRateSchedule.Constant"/> exists. Default constant.</summary>
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Constant;

    /// <summary>
    /// Warm-up fraction of the steps, in [0, 1]. Accepted for parity with the study's <c>warmup_ratio=0.03</c> but
    /// <b>ignored by the constant schedule</b>, exactly as HF's <c>constant</c> scheduler ignores it. Default 0.
    /// </summary>
    public double WarmupRatio { get; init; }

    /// <summary>Gradient clipping: the global L2 norm of the adapter gradients is scaled down to at most this; positive. Null disables clipping (the norm is still reported). Default 0.3.</summary>
    public double? MaxGradNorm { get; init; } = 0.3;

    /// <summary>AdamW β1, in [0, 1). Default 0.9.</summary>
    public double AdamBeta1 { get; init; } = 0.9;

    /// <summary>AdamW β2, in [0, 1). Default 0.999.</summary>
    public double AdamBeta2 { get; init; } = 0.999;

    /// <summary>AdamW ε; positive. Default 1e-8.</summary>
    public double AdamEpsilon { get; init; } = 1e-8;

    /// <summary>AdamW decoupled weight decay; non-negative. Default 0 (HF's default; PyTorch's <c>torch.optim.AdamW</c> defaults to 0.01, TorchSharp 0.107's to 0; the trainer always passes this value).</summary>
    public double WeightDecay { get; init; }

    /// <summary>Recompute each decoder layer in the backward (<c>MistralForCausalLM.GradientCheckpointing</c>) while training. Default true.</summary>
    public bool GradientCheckpointing { get; init; } = true;

    /// <summary>Shuffle the sequences (blocks or examples) at the start of each epoch. Default true.</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>
    /// Seed of the per-epoch shuffle (a private generator; the order depends only on the seed, the epoch and the block count,
    /// not on the batch sizes). It does not seed LoRA dropout, which draws from TorchSharp's default generator. Default 42 (HF's).
    /// </summary>
    public long Seed { get; init; } = 42;

    /// <summary>
    /// Log a line every this many optimizer steps (and at the last step); at least 1. The step losses and gradient norms
    /// stay on the device between reads; a log step reads every pending step. Default 10.
    /// </summary>
    public int LogEverySteps { get; init; } = 10;

    /// <summary>
    /// How often, in optimizer steps, the losses and pre-clip gradient norms of the steps taken since the last read are
    /// copied from the device to the host (one transfer for all of them) and reported to the progress sink, one report
    /// per step. Reads also happen at every log step (<see cref="LogEverySteps"/>), at each epoch's end and at the end.
    /// Null (the default) reads at the log steps only; 1 reads after every step (one host synchronization per step,
    /// which stalls an asynchronous device such as a GPU). At least 1 when set.
    /// </summary>
    public int? ReportEverySteps { get; init; }

    /// <summary>When set, the adapter is saved with <c>PeftAdapter.Save</c> after each epoch into <c>{CheckpointFolder}/checkpoint-{step}</c>. Default null (no checkpoints).</summary>
    public string? CheckpointFolder { get; init; }

    /// <summary>The <c>base_model_name_or_path</c> recorded in checkpoints' <c>adapter_config.json</c>. Default null.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>Optimizer steps per epoch for <paramref name="blocks"/> sequences: ⌈⌈blocks / batch⌉ / accumulation⌉ (a trailing partial accumulation is stepped).</summary>
    /// <param name="blocks">Sequences in the dataset (<see cref="TrainingDataset.Count"/>: packed blocks or completion examples).</param>
    /// <returns>The number of optimizer steps.</returns>
    public int StepsPerEpoch(int blocks)
    {
        int microBatches = (blocks + PerDeviceBatchSize - 1) / PerDeviceBatchSize;
        return (microBatches + GradientAccumulationSteps - 1) / GradientAccumulationSteps;
    }

    /// <summary>The study's classification run: 5 epochs, batch 4 × accumulation 2, lr 2e-4 constant (warm-up ratio 0.03, ignored), max grad norm 0.3, gradient checkpointing.</summary>
    public static LoraTrainingOptions Study { get; } = new() { Epochs = 5, WarmupRatio = 0.03 };

    /// <summary>The study's summarization run: <see cref="Study"/> with 1 epoch.</summary>
    public static LoraTrainingOptions StudySummarization { get; } = Study with { Epochs = 1 };

    /// <summary>Checks every option and throws naming the first invalid one.</summary>
    /// <returns>This instance, for chaining.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names it and what was expected.</exception>
    public LoraTrainingOptions Validate()
    {
        Require(Epochs >= 1, nameof(Epochs), "must be at least 1", Epochs);
        Require(PerDeviceBatchSize >= 1, nameof(PerDeviceBatchSize), "must be at least 1", PerDeviceBatchSize);
        Require(GradientAccumulationSteps >= 1, nameof(GradientAccumulationSteps), "must be at least 1", GradientAccumulationSteps);
        Require(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), "must be a positive finite number", LearningRate);
        Require(Enum.IsDefined(Schedule), nameof(Schedule), "must be a defined schedule (Constant)", Schedule);
        Require(WarmupRatio is >= 0 and <= 1, nameof(WarmupRatio), "must be in [0, 1]", WarmupRatio);
        Require(MaxGradNorm is null || (MaxGradNorm > 0 && double.IsFinite(MaxGradNorm.Value)), nameof(MaxGradNorm), "must be a positive finite number or null (no clipping)", MaxGradNorm);
        Require(AdamBeta1 is >= 0 and < 1, nameof(AdamBeta1), "must be in [0, 1)", AdamBeta1);
        Require(AdamBeta2 is >= 0 and < 1, nameof(AdamBeta2), "must be in [0, 1)", AdamBeta2);
        Require(AdamEpsilon > 0 && double.IsFinite(AdamEpsilon), nameof(AdamEpsilon), "must be a positive finite number", AdamEpsilon);
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), "must be a non-negative finite number", WeightDecay);
        Require(LogEverySteps >= 1, nameof(LogEverySteps), "must be at least 1", LogEverySteps);
        Require(ReportEverySteps is null or >= 1, nameof(ReportEverySteps), "must be null (read at log steps) or at least 1", ReportEverySteps);
        Require(CheckpointFolder is null || !string.IsNullOrWhiteSpace(CheckpointFolder), nameof(CheckpointFolder), "must be null or a non-empty path", CheckpointFolder);
        return this;
    }

    private static void Require(bool ok, string name, string expected, object? value)
    {
        if (!ok)
        {
            throw new ArgumentException($"LoraTrainingOptions.{name} {expected}; got {value?.ToString() ?? "null"}.", name);
        }
    }
}
