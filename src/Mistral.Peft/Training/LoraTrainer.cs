using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// Trains LoRA adapters on packed blocks the way Hugging Face's <c>Trainer</c> (under the study's TRL <c>SFTTrainer</c>)
/// does: per epoch a seeded shuffle of the blocks, micro-batches of <see cref="LoraTrainingOptions.PerDeviceBatchSize"/>
/// blocks (labels = inputs), each loss scaled by its share of the step's tokens (1 / accumulation for full micro-batches)
/// and back-propagated, and every <see cref="LoraTrainingOptions.GradientAccumulationSteps"/> micro-batches (and once more
/// for a partial group at an epoch's end) the adapter gradients clipped to <see cref="LoraTrainingOptions.MaxGradNorm"/>,
/// an AdamW step at a constant learning rate and the gradients zeroed.
/// </summary>
/// <remarks>
/// Only the adapter parameters (<see cref="LoraModel.AdapterParameters"/>) are optimized. Mixed precision is whatever the
/// model was built in (a bf16 or NF4 base with float32 adapters, as the study). The process-wide seed is never touched:
/// LoRA dropout draws from TorchSharp's default generator, which a caller seeds for reproducible dropout.
/// </remarks>
public sealed class LoraTrainer
{
    private readonly ILogger _logger;

    /// <summary>Creates a trainer.</summary>
    /// <param name="logger">Receives a line every <see cref="LoraTrainingOptions.LogEverySteps"/> steps and per epoch; null for none.</param>
    public LoraTrainer(ILogger<LoraTrainer>? logger = null)
    {
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Trains the adapters of <paramref name="lora"/> in place.</summary>
    /// <param name="model">The model the adapters were injected into (<see cref="LoraModel.Model"/>).</param>
    /// <param name="lora">The adapters to train.</param>
    /// <param name="data">Packed blocks (see <see cref="SftPacker"/>).</param>
    /// <param name="options">Training options (validated here).</param>
    /// <param name="progress">Told after every optimizer step.</param>
    /// <param name="cancellationToken">
    /// Checked before every micro-batch. On cancellation the gradients of the unfinished step are discarded, the model's
    /// training mode and checkpointing setting are restored and the steps already taken stay applied.
    /// </param>
    /// <returns>Per-step losses, gradient norms, tokens and timings.</returns>
    /// <exception cref="ArgumentException">The model is not the adapters' model, the data is empty, or an option is invalid.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public TrainingResult Train(MistralForCausalLM model, LoraModel lora, PackedDataset data, LoraTrainingOptions options,
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
            throw new ArgumentException($"data holds no blocks ({data.Describe()}); nothing to train on.", nameof(data));
        }

        var parameters = lora.AdapterParameters();
        if (parameters.Count == 0)
        {
            throw new ArgumentException("lora has no adapter parameters to train.", nameof(lora));
        }

        int stepsPerEpoch = options.StepsPerEpoch(data.Count);
        int totalSteps = stepsPerEpoch * options.Epochs;
        _logger.LogInformation(
            "LoRA training: {Data}; {Epochs} epochs × {StepsPerEpoch} steps (batch {Batch} × accumulation {Accumulation}), lr {LearningRate} constant, max grad norm {MaxGradNorm}, {Trainable}",
            data.Describe(), options.Epochs, stepsPerEpoch, options.PerDeviceBatchSize, options.GradientAccumulationSteps,
            options.LearningRate, options.MaxGradNorm?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none", lora.TrainableParameters());

        bool wasTraining = model.training;
        bool wasCheckpointing = model.GradientCheckpointing;
        var steps = new List<TrainingStep>(totalSteps);
        var epochLosses = new List<double>(options.Epochs);
        var checkpoints = new List<string>();
        var clock = new Stopwatch();
        long tokens = 0;
        Device device = model.Device;
        using var optimizer = optim.AdamW(parameters, lr: options.LearningRate, beta1: options.AdamBeta1, beta2: options.AdamBeta2,
            eps: options.AdamEpsilon, weight_decay: options.WeightDecay);
        ZeroGradAfter(optimizer, step: false);
        try
        {
            model.GradientCheckpointing = options.GradientCheckpointing;
            model.train();
            int step = 0;
            for (int epoch = 1; epoch <= options.Epochs; epoch++)
            {
                int[] order = EpochShuffle.Order(data.Count, options.Seed, epoch - 1, options.Shuffle);
                var microBatches = order.Chunk(options.PerDeviceBatchSize).ToList();
                double epochLossSum = 0;
                int epochSteps = 0;
                for (int first = 0; first < microBatches.Count; first += options.GradientAccumulationSteps)
                {
                    clock.Start();
                    var stepWatch = Stopwatch.StartNew();
                    var group = microBatches.Skip(first).Take(options.GradientAccumulationSteps).ToList();
                    int groupBlocks = group.Sum(b => b.Length);
                    double stepLoss = 0;
                    foreach (int[] batch in group)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        double weight = (double)batch.Length / groupBlocks; // share of the step's predicted tokens
                        using var scope = NewDisposeScope();
                        var ids = new long[batch.Length * data.SequenceLength];
                        data.CopyBlocks(batch, ids);
                        Tensor input = tensor(ids, [batch.Length, data.SequenceLength], ScalarType.Int64, device);
                        using var output = model.forward(new CausalLMInput(input) { Labels = input });
                        Tensor loss = output.Loss!;
                        (loss * weight).backward();
                        stepLoss += weight * loss.item<float>();
                    }

                    double gradNorm = ClipGradients(parameters, options.MaxGradNorm);
                    ZeroGradAfter(optimizer, step: true);
                    stepWatch.Stop();
                    clock.Stop();
                    step++;
                    long stepTokens = (long)groupBlocks * data.SequenceLength;
                    tokens += stepTokens;
                    steps.Add(new TrainingStep(step, epoch, group.Count, stepLoss, gradNorm, stepTokens, stepWatch.Elapsed));
                    epochLossSum += stepLoss;
                    epochSteps++;
                    double tokensPerSecond = clock.Elapsed.TotalSeconds > 0 ? tokens / clock.Elapsed.TotalSeconds : 0;
                    progress?.Report(new TrainingProgress(step, totalSteps, epoch, stepLoss, gradNorm, tokensPerSecond));
                    if (step % options.LogEverySteps == 0 || step == totalSteps)
                    {
                        _logger.LogInformation("step {Step}/{TotalSteps} epoch {Epoch}: loss {Loss:F4}, grad norm {GradNorm:F4}, {TokensPerSecond:F0} tokens/s",
                            step, totalSteps, epoch, stepLoss, gradNorm, tokensPerSecond);
                    }
                }

                double epochLoss = epochLossSum / epochSteps;
                epochLosses.Add(epochLoss);
                _logger.LogInformation("epoch {Epoch}/{Epochs}: mean loss {Loss:F4}", epoch, options.Epochs, epochLoss);
                if (options.CheckpointFolder is not null)
                {
                    string folder = Path.Combine(options.CheckpointFolder, $"checkpoint-{step}");
                    PeftAdapter.Save(lora, folder, options.BaseModelNameOrPath, cancellationToken);
                    checkpoints.Add(folder);
                    _logger.LogInformation("saved adapter checkpoint {Folder}", folder);
                }
            }
        }
        finally
        {
            clock.Stop();
            ZeroGradAfter(optimizer, step: false);
            model.GradientCheckpointing = wasCheckpointing;
            model.train(wasTraining);
        }

        return new TrainingResult(steps, epochLosses, tokens, clock.Elapsed, checkpoints);
    }

    /// <summary>
    /// Optionally steps the optimizer, then zeroes the gradients, inside a dispose scope: TorchSharp's <c>zero_grad</c> creates
    /// a tensor handle per parameter (<c>Tensor.zero_()</c> returns a new handle) that would otherwise be left to the finalizer.
    /// </summary>
    private static void ZeroGradAfter(optim.Optimizer optimizer, bool step)
    {
        using var scope = NewDisposeScope();
        if (step)
        {
            optimizer.step();
        }

        optimizer.zero_grad();
    }

    /// <summary>Clips the global L2 norm of the gradients (PyTorch's <c>clip_grad_norm_</c>) and returns the norm before clipping.</summary>
    private static double ClipGradients(IReadOnlyList<TorchSharp.Modules.Parameter> parameters, double? maxNorm)
    {
        using var scope = NewDisposeScope();
        return nn.utils.clip_grad_norm_(parameters, maxNorm ?? double.PositiveInfinity);
    }
}
