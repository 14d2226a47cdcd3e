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
/// Trains LoRA adapters the way Hugging Face's <c>Trainer</c> (under the study's TRL <c>SFTTrainer</c>) does: per epoch a
/// seeded shuffle of the sequences, micro-batches of <see cref="LoraTrainingOptions.PerDeviceBatchSize"/> sequences, and
/// every <see cref="LoraTrainingOptions.GradientAccumulationSteps"/> micro-batches (and once more for a partial group at an
/// epoch's end) the adapter gradients clipped to <see cref="LoraTrainingOptions.MaxGradNorm"/>, an AdamW step at a
/// constant learning rate and the gradients zeroed.
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
/// <see cref="LoraTrainingOptions.ReportEverySteps"/> (default <see cref="LoraTrainingOptions.LogEverySteps"/>) steps,
/// at each epoch's end and at the end. Progress is reported then, one report per step read.
/// </para>
/// <para>
/// Token ids are checked against the model's vocabulary before the first step. Only the adapter parameters
/// (<see cref="LoraModel.AdapterParameters"/>) are optimized. Mixed precision is whatever the model was built in (a bf16
/// or NF4 base with float32 adapters, as the study). The process-wide seed is never touched: LoRA dropout draws from
/// TorchSharp's default generator, which a caller seeds for reproducible dropout.
/// </para>
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
    /// <param name="data">Packed blocks (<see cref="SftPacker"/>) or completion examples (<see cref="SftCompletionBuilder"/>).</param>
    /// <param name="options">Training options (validated here).</param>
    /// <param name="progress">
    /// Told about every optimizer step, on the training thread, when the step's values are read from the device (see
    /// <see cref="TrainingProgress"/>): in bursts every <see cref="LoraTrainingOptions.ReportEverySteps"/> steps.
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

        int stepsPerEpoch = options.StepsPerEpoch(data.Count);
        int totalSteps = stepsPerEpoch * options.Epochs;
        int reportEvery = options.ReportEverySteps ?? options.LogEverySteps;
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
        var queue = new DeviceScalarQueue();
        var pending = new List<PendingStep>();
        using var optimizer = optim.AdamW(parameters, lr: options.LearningRate, beta1: options.AdamBeta1, beta2: options.AdamBeta2,
            eps: options.AdamEpsilon, weight_decay: options.WeightDecay);
        StepAndZeroGrad(optimizer, step: false);
        int step = 0;
        try
        {
            model.GradientCheckpointing = options.GradientCheckpointing;
            model.train();
            for (int epoch = 1; epoch <= options.Epochs; epoch++)
            {
                int[] order = EpochShuffle.Order(data.Count, options.Seed, epoch - 1, options.Shuffle);
                var microBatches = order.Chunk(options.PerDeviceBatchSize).ToList();
                for (int first = 0; first < microBatches.Count; first += options.GradientAccumulationSteps)
                {
                    clock.Start();
                    var stepWatch = Stopwatch.StartNew();
                    var group = microBatches.Skip(first).Take(options.GradientAccumulationSteps).ToList();
                    StepLosses losses = AccumulateStep(model, data, group, device, cancellationToken);
                    int lossIndex = queue.Count;
                    foreach (var loss in losses.Losses)
                    {
                        queue.Add(loss);
                    }

                    int normIndex = queue.Add(GradientClipping.ClipGradNorm(parameters, options.MaxGradNorm));
                    StepAndZeroGrad(optimizer, step: true);
                    stepWatch.Stop();
                    clock.Stop();
                    step++;
                    tokens += losses.Tokens;
                    pending.Add(new PendingStep(step, epoch, group.Count, losses.Weights, lossIndex, normIndex, losses.Tokens, losses.TargetTokens,
                        stepWatch.Elapsed, tokens, clock.Elapsed));

                    bool epochEnd = first + options.GradientAccumulationSteps >= microBatches.Count;
                    if (epochEnd || step % reportEvery == 0 || step % options.LogEverySteps == 0)
                    {
                        // The read waits for the device: its time belongs to the step that triggered it (and to the run).
                        clock.Start();
                        var readWatch = Stopwatch.StartNew();
                        float[] values = queue.ReadAll();
                        readWatch.Stop();
                        clock.Stop();
                        pending[^1] = pending[^1] with { Elapsed = pending[^1].Elapsed + readWatch.Elapsed, Clock = clock.Elapsed };
                        ReportPending(pending, values, steps, totalSteps, options.LogEverySteps, progress, cancellationToken);
                    }
                }

                double epochLossSum = 0;
                int epochSteps = 0;
                foreach (var s in steps)
                {
                    if (s.Epoch == epoch)
                    {
                        epochLossSum += s.Loss;
                        epochSteps++;
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
        catch (OperationCanceledException e) when (cancellationToken.IsCancellationRequested && e is not TrainingCanceledException)
        {
            // Account for every step actually applied (those not yet read included), then say how far the run got.
            clock.Stop();
            if (pending.Count > 0)
            {
                float[] values = queue.ReadAll();
                ReportPending(pending, values, steps, totalSteps, options.LogEverySteps, progress: null, CancellationToken.None);
            }

            var partial = new TrainingResult(steps, epochLosses, tokens, clock.Elapsed, checkpoints);
            throw new TrainingCanceledException(partial, step, totalSteps, cancellationToken);
        }
        finally
        {
            clock.Stop();
            queue.Dispose();
            StepAndZeroGrad(optimizer, step: false);
            model.GradientCheckpointing = wasCheckpointing;
            model.train(wasTraining);
        }

        return new TrainingResult(steps, epochLosses, tokens, clock.Elapsed, checkpoints);
    }

    /// <summary>
    /// Forward and backward of one optimizer step's micro-batches: each micro-batch's mean loss (over its target tokens)
    /// is scaled by its share of the step's target tokens and back-propagated, so the gradients summed over the step are
    /// those of Σ token losses / step target tokens. Nothing is read from the device.
    /// </summary>
    /// <returns>Each micro-batch's detached mean loss (the caller owns them), their weights and the step's token counts.</returns>
    internal static StepLosses AccumulateStep(MistralForCausalLM model, TrainingDataset data, IReadOnlyList<int[]> group, Device device,
        CancellationToken cancellationToken)
    {
        var batches = new TrainingBatch[group.Count];
        long targets = 0;
        long tokens = 0;
        for (int i = 0; i < group.Count; i++)
        {
            batches[i] = data.CreateBatch(group[i]);
            if (batches[i].TargetTokens <= 0)
            {
                throw new InvalidOperationException($"A micro-batch of sequences [{string.Join(", ", group[i])}] has no target token; every sequence must have one.");
            }

            targets += batches[i].TargetTokens;
            tokens += batches[i].Tokens;
        }

        var weights = new double[batches.Length];
        var losses = new List<Tensor>(batches.Length);
        try
        {
            for (int i = 0; i < batches.Length; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                TrainingBatch batch = batches[i];
                weights[i] = (double)batch.TargetTokens / targets; // share of the step's target tokens
                using var scope = NewDisposeScope();
                long[] shape = [batch.Rows, batch.Columns];
                Tensor input = Upload(batch.InputIds, shape, device);
                Tensor? mask = batch.AttentionMask is null ? null : Upload(batch.AttentionMask, shape, device);
                Tensor labels = batch.Labels is null ? input : Upload(batch.Labels, shape, device);
                using var output = model.forward(new CausalLMInput(input) { AttentionMask = mask, Labels = labels });
                Tensor loss = output.Loss!;
                (loss * weights[i]).backward();
                losses.Add(loss.detach().DetachFromDisposeScope());
            }
        }
        catch
        {
            foreach (var l in losses)
            {
                l.Dispose();
            }

            throw;
        }

        return new StepLosses(losses, weights, tokens, targets);
    }

    /// <summary>
    /// An int64 tensor of host data on <paramref name="device"/>, in the current dispose scope. For CUDA the data goes through
    /// pinned memory with a non-blocking copy: a blocking copy from pageable memory synchronizes the stream (it would wait
    /// for every queued kernel, i.e. a host sync per micro-batch). libtorch's pinned-memory allocator keeps the staging
    /// buffer until the copy has run, so disposing it right away is safe.
    /// </summary>
    private static Tensor Upload(long[] data, long[] shape, Device device)
    {
        Tensor host = tensor(data, shape, ScalarType.Int64);
        return device.type switch
        {
            DeviceType.CPU => host,
            DeviceType.CUDA => host.pin_memory().to(device, non_blocking: true),
            _ => host.to(device),
        };
    }

    /// <summary>Turns the steps read from the device into results, progress reports and log lines, then clears them.</summary>
    private void ReportPending(List<PendingStep> pending, float[] values, List<TrainingStep> steps, int totalSteps, int logEvery,
        IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        var read = new List<TrainingStep>(pending.Count);
        foreach (var p in pending)
        {
            double loss = 0;
            for (int i = 0; i < p.Weights.Length; i++)
            {
                loss += p.Weights[i] * values[p.LossIndex + i];
            }

            double gradNorm = values[p.NormIndex];
            var s = new TrainingStep(p.Step, p.Epoch, p.MicroBatches, loss, gradNorm, p.Tokens, p.Elapsed) { TargetTokens = p.TargetTokens };
            steps.Add(s);
            read.Add(s);
        }

        var tokensPerSecond = pending.ToDictionary(p => p.Step, p => p.Clock.TotalSeconds > 0 ? p.TokensSoFar / p.Clock.TotalSeconds : 0);
        pending.Clear();
        foreach (var s in read)
        {
            double tps = tokensPerSecond[s.Step];
            if (s.Step % logEvery == 0 || s.Step == totalSteps)
            {
                _logger.LogInformation("step {Step}/{TotalSteps} epoch {Epoch}: loss {Loss:F4}, grad norm {GradNorm:F4}, {TokensPerSecond:F0} tokens/s",
                    s.Step, totalSteps, s.Epoch, s.Loss, s.GradNorm, tps);
            }

            if (progress is not null)
            {
                progress.Report(new TrainingProgress(s.Step, totalSteps, s.Epoch, s.Loss, s.GradNorm, tps));
                cancellationToken.ThrowIfCancellationRequested();
            }
        }
    }

    /// <summary>
    /// Optionally steps the optimizer, then zeroes the gradients, inside a dispose scope: TorchSharp's <c>zero_grad</c> creates
    /// a tensor handle per parameter (<c>Tensor.zero_()</c> returns a new handle) that would otherwise be left to the finalizer.
    /// </summary>
    private static void StepAndZeroGrad(optim.Optimizer optimizer, bool step)
    {
        using var scope = NewDisposeScope();
        if (step)
        {
            optimizer.step();
        }

        optimizer.zero_grad();
    }

    /// <summary>The device-side losses of one step (see <see cref="AccumulateStep"/>).</summary>
    internal sealed record StepLosses(IReadOnlyList<Tensor> Losses, double[] Weights, long Tokens, long TargetTokens);

    /// <summary>
    /// A step taken whose loss and norm are still on the device (indices into the pending read), with the run's tokens and
    /// training time up to its end (for its throughput).
    /// </summary>
    private sealed record PendingStep(int Step, int Epoch, int MicroBatches, double[] Weights, int LossIndex, int NormIndex, long Tokens,
        long TargetTokens, TimeSpan Elapsed, long TokensSoFar, TimeSpan Clock);
}
