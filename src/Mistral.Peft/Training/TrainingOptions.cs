using System.Globalization;

namespace Mistral.Peft.Training;

/// <summary>
/// Settings of the training loop shared by <see cref="LoraTrainer"/> (through <see cref="LoraTrainingOptions"/>) and
/// <see cref="CausalLMTrainer"/>, named after Hugging Face <c>TrainingArguments</c>. Defaults are the study's (batch 4,
/// accumulation 2, lr 2e-4 constant, max grad norm 0.3, gradient checkpointing) and HF's AdamW defaults (betas
/// 0.9/0.999, eps 1e-8, weight decay 0). Call <see cref="Validate"/> (the trainers do) to get an exception naming the
/// first invalid option.
/// </summary>
/// <remarks>
/// The study used bitsandbytes' paged 32-bit AdamW; TorchSharp's <c>torch.optim.AdamW</c> performs the same update
/// (its state in the parameters' dtype) without paging the state to host memory.
/// </remarks>
public record TrainingOptions
{
    /// <summary>Passes over the data; at least 1. Default 1.</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Sequences (packed blocks or completion examples) per micro-batch (one forward/backward); at least 1. Default 4.</summary>
    public int PerDeviceBatchSize { get; init; } = 4;

    /// <summary>Micro-batches whose gradients are summed before each optimizer step; at least 1. Default 2.</summary>
    public int GradientAccumulationSteps { get; init; } = 2;

    /// <summary>AdamW (peak) learning rate; positive and finite. The <see cref="Schedule"/> scales it per step. Default 2e-4.</summary>
    public double LearningRate { get; init; } = 2e-4;

    /// <summary>
    /// How the learning rate changes over the run's optimizer steps (see <see cref="LearningRateSchedule"/> and
    /// <see cref="LearningRateAt"/>). Default <see cref="LearningRateSchedule.Constant"/> (the study's).
    /// </summary>
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Constant;

    /// <summary>
    /// Warm-up as a fraction of the run's optimizer steps, in [0, 1]: ⌈total steps × ratio⌉ warm-up steps, as HF's
    /// <c>TrainingArguments.get_warmup_steps</c> computes them, unless <see cref="WarmupSteps"/> is positive. Used by the
    /// warm-up schedules (<see cref="LearningRateSchedule.ConstantWithWarmup"/>, <see cref="LearningRateSchedule.Linear"/>,
    /// <see cref="LearningRateSchedule.Cosine"/>). <b>Ignored by <see cref="LearningRateSchedule.Constant"/></b>, exactly as
    /// HF's <c>constant</c> scheduler ignores it: the study's <c>warmup_ratio=0.03</c> had no effect. Default 0.
    /// </summary>
    public double WarmupRatio { get; init; }

    /// <summary>
    /// Warm-up steps; non-negative. When positive it takes precedence over <see cref="WarmupRatio"/> (HF's
    /// <c>warmup_steps</c>); 0 uses the ratio. Ignored by <see cref="LearningRateSchedule.Constant"/>. Default 0.
    /// </summary>
    public int WarmupSteps { get; init; }

    /// <summary>Gradient clipping: the global L2 norm of the trained parameters' gradients is scaled down to at most this; positive. Null disables clipping (the norm is still reported). Default 0.3.</summary>
    public double? MaxGradNorm { get; init; } = 0.3;

    /// <summary>AdamW β1, in [0, 1). Default 0.9.</summary>
    public double AdamBeta1 { get; init; } = 0.9;

    /// <summary>AdamW β2, in [0, 1). Default 0.999.</summary>
    public double AdamBeta2 { get; init; } = 0.999;

    /// <summary>AdamW ε; positive. Default 1e-8.</summary>
    public double AdamEpsilon { get; init; } = 1e-8;

    /// <summary>
    /// AdamW decoupled weight decay; non-negative. Default 0 (HF's default; PyTorch's <c>torch.optim.AdamW</c> defaults to
    /// 0.01, TorchSharp 0.107's to 0; the trainers always pass this value). <see cref="LoraTrainer"/> decays every adapter
    /// weight; <see cref="CausalLMTrainer"/> decays, like HF's <c>Trainer</c>, every trained parameter except biases and
    /// norm weights (see <see cref="CausalLMTrainer.DecayParameterNames"/>).
    /// </summary>
    public double WeightDecay { get; init; }

    /// <summary>Recompute each decoder layer in the backward (<c>MistralForCausalLM.GradientCheckpointing</c>) while training. Default true.</summary>
    public bool GradientCheckpointing { get; init; } = true;

    /// <summary>
    /// Run the AdamW step, gradient clipping and zeroing over one flat buffer per parameter group (as PyTorch's
    /// <c>foreach</c> optimizers batch them) instead of parameter by parameter: the same arithmetic per element, about a
    /// tenth of the kernel launches for LoRA's hundreds of small tensors. Applies when every group's parameters share a
    /// dtype and device; otherwise the per-parameter loop runs. Default true.
    /// </summary>
    public bool ForeachOptimizer { get; init; } = true;

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

    /// <summary>
    /// When set, checkpoints are written into <c>{CheckpointFolder}/checkpoint-{step}</c> (HF's layout): after each epoch,
    /// or every <see cref="SaveEverySteps"/> steps. <see cref="LoraTrainer"/> writes the adapter (PEFT format);
    /// <see cref="CausalLMTrainer"/> the whole model (<c>model.safetensors</c> and <c>config.json</c>); next to them
    /// <c>optimizer.safetensors</c> (AdamW moments) and <c>trainer_state.json</c> (step, run shape, log history), from
    /// which <see cref="ResumeFrom"/> continues. Each checkpoint is written into a temporary sibling folder that then
    /// replaces <c>checkpoint-{step}</c> by directory renames (never a mix of two saves). The folder is checked before
    /// the first step (see <see cref="OverwriteCheckpoints"/>). Default null (no checkpoints).
    /// </summary>
    public string? CheckpointFolder { get; init; }

    /// <summary>
    /// Save a checkpoint every this many optimizer steps and after the last step (HF's <c>save_strategy="steps"</c> with
    /// <c>save_steps</c>) instead of after each epoch; needs <see cref="CheckpointFolder"/>. At least 1 when set. Default
    /// null (a checkpoint per epoch).
    /// </summary>
    public int? SaveEverySteps { get; init; }

    /// <summary>
    /// What a step whose loss or gradient norm is NaN or infinite does: <see cref="NonFiniteStepPolicy.Stop"/> (default)
    /// throws a <see cref="TrainingDivergedException"/> naming the step, <see cref="NonFiniteStepPolicy.Skip"/> drops the
    /// step's update and goes on. On the CPU, and with <c>Skip</c> on any device, a device-side finiteness flag is read
    /// before each optimizer step, so a non-finite step is never applied; with <c>Stop</c> on an accelerator the flag is
    /// read with the step values (<see cref="ReportEverySteps"/>), so up to that many further steps may have been applied.
    /// Either way the trained weights are checked before every checkpoint, and a non-finite checkpoint is never written.
    /// </summary>
    public NonFiniteStepPolicy NonFiniteStep { get; init; } = NonFiniteStepPolicy.Stop;

    /// <summary>
    /// Whether a run may replace an existing <c>checkpoint-{step}</c> folder in <see cref="CheckpointFolder"/>. Default
    /// false: the trainers check the folder before the first step and refuse to start when a checkpoint the run would
    /// write already exists (the message names them). When true each is replaced atomically when its step is reached.
    /// </summary>
    public bool OverwriteCheckpoints { get; init; }

    /// <summary>
    /// Resume an interrupted run (Hugging Face's <c>resume_from_checkpoint</c>): a checkpoint folder written by a run with
    /// <see cref="CheckpointFolder"/> (it holds the weights, <c>optimizer.safetensors</c> and <c>trainer_state.json</c>), or
    /// <c>"latest"</c> for the highest <c>checkpoint-{step}</c> in <see cref="CheckpointFolder"/>. The trained weights, the
    /// AdamW moments and steps, the step (hence the schedule position) and the data position are restored, and the run
    /// goes on from the next step with the same losses as an uninterrupted run (same options and data). Like
    /// transformers' Trainer, resuming also restores TorchSharp's default CPU generator to its state at the checkpoint
    /// (saved in <c>optimizer.safetensors</c>), so LoRA dropout on the CPU continues with the same masks; that is the one
    /// process-wide state the library changes, and only when asked to resume. The CUDA generator cannot be read through
    /// TorchSharp, so dropout on a GPU resumes with different masks. The result's steps include the restored ones.
    /// Default null (start from scratch).
    /// </summary>
    public string? ResumeFrom { get; init; }

    /// <summary>The value of <see cref="ResumeFrom"/> that picks the highest checkpoint in <see cref="CheckpointFolder"/>.</summary>
    public const string Latest = "latest";

    /// <summary>The 1-based steps after which a run of <paramref name="totalSteps"/> steps writes a checkpoint (none without <see cref="CheckpointFolder"/>).</summary>
    /// <param name="stepsPerEpoch">Optimizer steps per epoch (<see cref="StepsPerEpoch"/>).</param>
    /// <param name="totalSteps">Optimizer steps of the whole run.</param>
    /// <returns>The steps, ascending.</returns>
    public IReadOnlyList<int> CheckpointSteps(int stepsPerEpoch, int totalSteps)
    {
        if (CheckpointFolder is null)
        {
            return [];
        }

        return SaveEverySteps is int every
            ? [.. Enumerable.Range(1, totalSteps).Where(s => s % every == 0 || s == totalSteps)]
            : [.. Enumerable.Range(1, totalSteps / stepsPerEpoch).Select(e => e * stepsPerEpoch)];
    }

    /// <summary>Optimizer steps per epoch for <paramref name="blocks"/> sequences: ⌈⌈blocks / batch⌉ / accumulation⌉ (a trailing partial accumulation is stepped).</summary>
    /// <param name="blocks">Sequences in the dataset (<see cref="TrainingDataset.Count"/>: packed blocks or completion examples).</param>
    /// <returns>The number of optimizer steps.</returns>
    public int StepsPerEpoch(int blocks)
    {
        int microBatches = (blocks + PerDeviceBatchSize - 1) / PerDeviceBatchSize;
        return (microBatches + GradientAccumulationSteps - 1) / GradientAccumulationSteps;
    }

    /// <summary>
    /// The warm-up steps of a run of <paramref name="totalSteps"/> optimizer steps: <see cref="WarmupSteps"/> when positive,
    /// else ⌈<paramref name="totalSteps"/> × <see cref="WarmupRatio"/>⌉ computed in double precision (as Python computes
    /// <c>math.ceil(num_training_steps * warmup_ratio)</c>: 100 × 0.07 = 7.000000000000001 gives 8). 0 for
    /// <see cref="LearningRateSchedule.Constant"/>, which has no warm-up.
    /// </summary>
    /// <param name="totalSteps">The run's optimizer steps (<see cref="StepsPerEpoch"/> × <see cref="Epochs"/>); non-negative.</param>
    /// <returns>The number of warm-up steps.</returns>
    public int WarmupStepsFor(int totalSteps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(totalSteps);
        if (Schedule == LearningRateSchedule.Constant)
        {
            return 0;
        }

        return WarmupSteps > 0 ? WarmupSteps : (int)Math.Ceiling(totalSteps * WarmupRatio);
    }

    /// <summary>
    /// The learning rate AdamW uses for optimizer step <paramref name="step"/> (1-based) of a run of
    /// <paramref name="totalSteps"/> steps: <see cref="LearningRate"/> × the schedule's multiplier at step index
    /// <paramref name="step"/> − 1, as HF's <c>LambdaLR</c> schedulers give it (the first step uses the multiplier at 0;
    /// see <see cref="LearningRateSchedule"/> for the formulas). Exactly <see cref="LearningRate"/> for
    /// <see cref="LearningRateSchedule.Constant"/>.
    /// </summary>
    /// <param name="step">The optimizer step, 1-based (<see cref="TrainingStep.Step"/>); at least 1.</param>
    /// <param name="totalSteps">The run's optimizer steps; at least <paramref name="step"/>.</param>
    /// <returns>The learning rate.</returns>
    public double LearningRateAt(int step, int totalSteps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(totalSteps, step);
        int s = step - 1;
        int warmup = WarmupStepsFor(totalSteps);
        double multiplier = Schedule switch
        {
            LearningRateSchedule.Constant => 1.0,
            _ when s < warmup => (double)s / Math.Max(1, warmup),
            LearningRateSchedule.ConstantWithWarmup => 1.0,
            LearningRateSchedule.Linear => Math.Max(0.0, (double)(totalSteps - s) / Math.Max(1, totalSteps - warmup)),
            LearningRateSchedule.Cosine => Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * CosineCycles * 2.0 * ((double)(s - warmup) / Math.Max(1, totalSteps - warmup))))),
            _ => throw new InvalidOperationException($"Unknown learning-rate schedule {Schedule}."),
        };
        return LearningRate * multiplier;
    }

    /// <summary>Checks every option and throws naming the first invalid one.</summary>
    /// <returns>This instance, for chaining.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names it (<c>{type}.{option}</c>) and what was expected.</exception>
    public virtual TrainingOptions Validate()
    {
        Require(Epochs >= 1, nameof(Epochs), "must be at least 1", Epochs);
        Require(PerDeviceBatchSize >= 1, nameof(PerDeviceBatchSize), "must be at least 1", PerDeviceBatchSize);
        Require(GradientAccumulationSteps >= 1, nameof(GradientAccumulationSteps), "must be at least 1", GradientAccumulationSteps);
        Require(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), "must be a positive finite number", LearningRate);
        Require(Enum.IsDefined(Schedule), nameof(Schedule), "must be a defined schedule (Constant, ConstantWithWarmup, Linear or Cosine)", Schedule);
        Require(WarmupRatio is >= 0 and <= 1, nameof(WarmupRatio), "must be in [0, 1]", WarmupRatio);
        Require(WarmupSteps >= 0, nameof(WarmupSteps), "must be non-negative (0 uses WarmupRatio)", WarmupSteps);
        Require(MaxGradNorm is null || (MaxGradNorm > 0 && double.IsFinite(MaxGradNorm.Value)), nameof(MaxGradNorm), "must be a positive finite number or null (no clipping)", MaxGradNorm);
        Require(AdamBeta1 is >= 0 and < 1, nameof(AdamBeta1), "must be in [0, 1)", AdamBeta1);
        Require(AdamBeta2 is >= 0 and < 1, nameof(AdamBeta2), "must be in [0, 1)", AdamBeta2);
        Require(AdamEpsilon > 0 && double.IsFinite(AdamEpsilon), nameof(AdamEpsilon), "must be a positive finite number", AdamEpsilon);
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), "must be a non-negative finite number", WeightDecay);
        Require(LogEverySteps >= 1, nameof(LogEverySteps), "must be at least 1", LogEverySteps);
        Require(ReportEverySteps is null or >= 1, nameof(ReportEverySteps), "must be null (read at log steps) or at least 1", ReportEverySteps);
        Require(CheckpointFolder is null || !string.IsNullOrWhiteSpace(CheckpointFolder), nameof(CheckpointFolder), "must be null or a non-empty path", CheckpointFolder);
        Require(SaveEverySteps is null or >= 1, nameof(SaveEverySteps), "must be null (a checkpoint per epoch) or at least 1", SaveEverySteps);
        Require(ResumeFrom is null || !string.IsNullOrWhiteSpace(ResumeFrom), nameof(ResumeFrom), "must be null, \"latest\" or a checkpoint folder", ResumeFrom);
        Require(ResumeFrom != Latest || CheckpointFolder is not null, nameof(ResumeFrom), "\"latest\" needs CheckpointFolder (where to look)", ResumeFrom);
        Require(Enum.IsDefined(NonFiniteStep), nameof(NonFiniteStep), "must be Stop or Skip", NonFiniteStep);
        Require(SaveEverySteps is null || CheckpointFolder is not null, nameof(SaveEverySteps), "needs CheckpointFolder (nothing would be saved)", SaveEverySteps);
        return this;
    }

    /// <summary>HF's <c>num_cycles</c> of the cosine schedule (half a cosine wave, from the peak down to 0).</summary>
    private const double CosineCycles = 0.5;

    /// <summary>Throws an <see cref="ArgumentException"/> named <paramref name="name"/> when <paramref name="ok"/> is false.</summary>
    /// <param name="ok">Whether the option is valid.</param>
    /// <param name="name">The option's property name.</param>
    /// <param name="expected">What a valid value is.</param>
    /// <param name="value">The value found.</param>
    private protected void Require(bool ok, string name, string expected, object? value)
    {
        if (!ok)
        {
            string shown = value is IFormattable f ? f.ToString(null, CultureInfo.InvariantCulture) : value?.ToString() ?? "null";
            throw new ArgumentException($"{GetType().Name}.{name} {expected}; got {shown}.", name);
        }
    }
}
