using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;

namespace Mistral.Peft.Training;

/// <summary>
/// Trains LoRA adapters the way Hugging Face's <c>Trainer</c> (under the study's TRL <c>SFTTrainer</c>) does: per epoch a
/// seeded shuffle of the sequences, micro-batches of <see cref="TrainingOptions.PerDeviceBatchSize"/> sequences, and
/// every <see cref="TrainingOptions.GradientAccumulationSteps"/> micro-batches (and once more for a partial group at an
/// epoch's end) the adapter gradients clipped to <see cref="TrainingOptions.MaxGradNorm"/>, an AdamW step at the
/// schedule's learning rate (constant by default, as the study) and the gradients zeroed.
/// </summary>
/// <remarks>
/// <para>
/// The loss of a step is normalized over the target tokens of the whole step (transformers ≥ 4.46 with
/// <c>num_items_in_batch</c>): each micro-batch's mean loss is scaled by its share of the step's target tokens before
/// its backward, so the step loss is the sum of all token losses over the step's target-token count, not a mean of
/// micro-batch means. Packed blocks (<see cref="PackedDataset"/>) all hold the same number of targets, so their share is
/// blocks / step blocks; completion examples (<see cref="CompletionDataset"/>) are weighted by their target tokens.
/// </para>
/// <para>
/// Nothing waits for the device per micro-batch: step losses and pre-clip gradient norms (clipping itself runs on the
/// device) stay device tensors until they are read, all pending steps in one transfer, every
/// <see cref="TrainingOptions.ReportEverySteps"/> (default <see cref="TrainingOptions.LogEverySteps"/>) steps,
/// at each epoch's end and at the end. Progress is reported then, one report per step read.
/// </para>
/// <para>
/// Token ids are checked against the model's vocabulary before the first step. Only the adapter parameters
/// (<see cref="LoraModel.AdapterParameters"/>) are optimized, all with <see cref="TrainingOptions.WeightDecay"/>. Mixed
/// precision is whatever the model was built in (a bf16 or NF4 base with float32 adapters, as the study). The
/// process-wide seed is never touched: LoRA dropout draws from TorchSharp's default generator, which a caller seeds for
/// reproducible dropout. The loop is the one <see cref="CausalLMTrainer"/> runs for full-parameter training.
/// </para>
/// </remarks>
public sealed class LoraTrainer
{
    private readonly ILogger _logger;

    /// <summary>Creates a trainer.</summary>
    /// <param name="logger">Receives a line every <see cref="TrainingOptions.LogEverySteps"/> steps and per epoch; null for none.</param>
    public LoraTrainer(ILogger<LoraTrainer>? logger = null)
    {
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Trains the adapters of <paramref name="lora"/> in place.</summary>
    /// <param name="model">The model the adapters were injected into (<see cref="LoraModel.Model"/>).</param>
    /// <param name="lora">The adapters to train.</param>
    /// <param name="data">Packed blocks (<see cref="SftPacker"/>) or completion examples (<see cref="SftCompletionBuilder"/>).</param>
    /// <param name="options">Training options (validated here).</param>
    /// <param name="progress">
    /// Told about every optimizer step, on the training thread, when the step's values are read from the device (see
    /// <see cref="TrainingProgress"/>): in bursts every <see cref="TrainingOptions.ReportEverySteps"/> steps.
    /// </param>
    /// <param name="cancellationToken">
    /// Checked before every micro-batch and after every progress report. On cancellation the gradients of the unfinished
    /// step are discarded, the model's training mode and checkpointing setting are restored and the steps already taken
    /// stay applied (steps taken since the last read are not reported).
    /// </param>
    /// <returns>Per-step losses, gradient norms, tokens and timings.</returns>
    /// <exception cref="ArgumentException">
    /// The model is not the adapters' model, the data is empty or holds a token id outside the model's vocabulary (the
    /// message names the block or example, the position and the id), or an option is invalid.
    /// </exception>
    /// <exception cref="TrainingCanceledException">The token was cancelled; the exception (an <see cref="OperationCanceledException"/>) carries every step taken.</exception>
    /// <exception cref="TrainingDivergedException">
    /// A step's loss or gradient norm was not finite (<see cref="TrainingOptions.NonFiniteStep"/>), or the trained weights
    /// were not finite when a checkpoint was due (it is not written); the exception names the step and carries the steps taken.
    /// </exception>
    /// <exception cref="IOException"><see cref="TrainingOptions.CheckpointFolder"/> cannot be created, or writing a checkpoint failed.</exception>
    public TrainingResult Train(MistralForCausalLM model, LoraModel lora, TrainingDataset data, LoraTrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(lora);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (!ReferenceEquals(model, lora.Model))
        {
            throw new ArgumentException("model must be the model the LoRA adapters were injected into (lora.Model).", nameof(model));
        }

        if (data.Count == 0)
        {
            throw new ArgumentException($"data is empty: no blocks or examples to train on ({data.Describe()}).", nameof(data));
        }

        data.CheckTokenIds(model.Config.VocabSize);
        var parameters = lora.AdapterParameters();
        if (parameters.Count == 0)
        {
            throw new ArgumentException("lora has no adapter parameters to train.", nameof(lora));
        }

        var setup = new TrainingLoop.Setup("LoRA training", lora.TrainableParameters().ToString(), parameters,
            [new TrainingLoop.ParameterGroup(parameters, options.WeightDecay)],
            (directory, ct) => PeftAdapter.WriteFiles(lora, directory, options.BaseModelNameOrPath, ct), folder => PeftAdapter.LoadWeights(lora, folder), "adapter");
        return TrainingLoop.Run(_logger, model, data, options, setup, progress, cancellationToken);
    }
}
