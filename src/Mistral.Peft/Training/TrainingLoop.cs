using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Mistral.Core.Modeling;
using Mistral.Peft.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// The training loop of <see cref="LoraTrainer"/> and <see cref="CausalLMTrainer"/>: per epoch a seeded shuffle of the
/// sequences, micro-batches of <see cref="TrainingOptions.PerDeviceBatchSize"/> sequences, and every
/// <see cref="TrainingOptions.GradientAccumulationSteps"/> micro-batches (and once more for a partial group at an epoch's
/// end) the trained parameters' gradients clipped together, an AdamW step at the schedule's learning rate and the
/// gradients zeroed. What is trained (the parameters, their AdamW groups) and how a checkpoint is written come from the
/// caller (<see cref="Setup"/>); everything else is the same for both trainers.
/// </summary>
internal static class TrainingLoop
{
    /// <summary>Runs the loop. The caller has validated the options and the data and chosen the parameters.</summary>
    /// <param name="logger">Receives the run's log lines.</param>
    /// <param name="model">The model (its training mode and checkpointing setting are restored at the end).</param>
    /// <param name="data">The sequences (non-empty, token ids checked).</param>
    /// <param name="options">Valid options.</param>
    /// <param name="setup">The trained parameters and how to save a checkpoint.</param>
    /// <param name="progress">Told about every step when its values are read.</param>
    /// <param name="cancellationToken">Checked before every micro-batch and after every progress report.</param>
    /// <returns>What the run did.</returns>
    public static TrainingResult Run(ILogger logger, MistralForCausalLM model, TrainingDataset data, TrainingOptions options, Setup setup,
        IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        int stepsPerEpoch = options.StepsPerEpoch(data.Count);
        long plannedSteps = (long)stepsPerEpoch * options.Epochs;
        if (plannedSteps > int.MaxValue)
        {
            throw new ArgumentException(
                $"{options.GetType().Name}.Epochs {options.Epochs} × {stepsPerEpoch} steps per epoch is {plannedSteps:N0} optimizer steps, more than a run can count ({int.MaxValue:N0}).",
                nameof(options));
        }

        int totalSteps = (int)plannedSteps;
        int reportEvery = options.ReportEverySteps ?? options.LogEverySteps;
        string? resumeFolder = ResolveResume(options);
        TrainerState? resume = resumeFolder is null ? null : TrainerState.Read(resumeFolder);
        resume?.CheckMatches(resumeFolder!, options, stepsPerEpoch, totalSteps, data.Count);
        int startStep = resume?.GlobalStep ?? 0;
        CheckOutputFolder(options, [.. options.CheckpointSteps(stepsPerEpoch, totalSteps).Where(s => s > startStep)]);
        logger.LogInformation(
            "{Kind}: {Data}; {Epochs} epochs × {StepsPerEpoch} steps (batch {Batch} × accumulation {Accumulation}), lr {LearningRate} {Schedule}, max grad norm {MaxGradNorm}, {Trainable}",
            setup.Kind, data.Describe(), options.Epochs, stepsPerEpoch, options.PerDeviceBatchSize, options.GradientAccumulationSteps,
            options.LearningRate, DescribeSchedule(options, totalSteps), options.MaxGradNorm?.ToString(CultureInfo.InvariantCulture) ?? "none",
            setup.Trainable);

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
        var groups = setup.Groups
            .Where(g => g.Parameters.Count > 0)
            .Select(g => new AdamW.ParamGroup(g.Parameters, lr: options.LearningRate, beta1: options.AdamBeta1, beta2: options.AdamBeta2,
                eps: options.AdamEpsilon, weight_decay: g.WeightDecay))
            .ToList();
        using var optimizer = optim.AdamW(groups, lr: options.LearningRate, beta1: options.AdamBeta1, beta2: options.AdamBeta2,
            eps: options.AdamEpsilon, weight_decay: options.WeightDecay);
        StepAndZeroGrad(optimizer, step: false);
        // Flat gradients and moments (views), so the step is a few kernels per group, not nine per parameter.
        using var flat = options.ForeachOptimizer ? FlatAdamW.TryCreate(optimizer) : null;
        int step = 0;
        int skipped = 0;
        bool checkEachStep = options.NonFiniteStep == NonFiniteStepPolicy.Skip || device.type == DeviceType.CPU;

        TrainingResult Partial() => new(steps, epochLosses, tokens, clock.Elapsed, checkpoints) { SkippedSteps = skipped };

        // Reads the pending steps and stops at the first non-finite one (found late: its update and later ones were applied).
        void Read(IProgress<TrainingProgress>? report, CancellationToken ct)
        {
            float[] values = queue.ReadAll();
            TrainingStep? diverged = ReportPending(logger, pending, values, steps, totalSteps, options.LogEverySteps, report, ct);
            if (diverged is not null)
            {
                throw Diverged(diverged.Step, diverged.Epoch, Describe(diverged.Loss, diverged.GradNorm), Partial(), weightsFinite: false, options);
            }
        }

        void SaveCheckpoint()
        {
            string folder = Path.Combine(options.CheckpointFolder!, $"checkpoint-{step}");
            if (pending.Count > 0)
            {
                Read(progress, cancellationToken); // the state's log history holds every step
            }

            if (!AllFinite(setup.Parameters))
            {
                throw new TrainingDivergedException(
                    $"The trained weights hold NaN or infinite values at step {step}; checkpoint '{folder}' was not written. {Advice(options)}",
                    step, Partial(), weightsFinite: false);
            }

            using (var staged = StagedFolder.Create(folder))
            {
                var names = setup.WriteCheckpointFiles(staged.StagingPath, cancellationToken).ToList();
                var state = new TrainerState(step, totalSteps, stepsPerEpoch, options.Epochs, options.Seed, options.PerDeviceBatchSize,
                    options.GradientAccumulationSteps, data.Count, tokens, skipped, TrainerState.Steps(optimizer), [.. steps]);
                names.AddRange(state.Write(staged.StagingPath, optimizer, cancellationToken));
                cancellationToken.ThrowIfCancellationRequested();
                staged.Commit(names);
            }

            checkpoints.Add(folder);
            logger.LogInformation("saved {What} checkpoint {Folder}", setup.CheckpointKind, folder);
        }

        try
        {
            if (resume is not null)
            {
                setup.LoadCheckpointWeights(resumeFolder!);
                resume.LoadOptimizer(resumeFolder!, optimizer);
                step = startStep;
                steps.AddRange(resume.LogHistory);
                tokens = resume.Tokens;
                skipped = resume.SkippedSteps;
                for (int e = 1; e <= startStep / stepsPerEpoch; e++)
                {
                    epochLosses.Add(steps.Where(s => s.Epoch == e).Select(s => s.Loss).DefaultIfEmpty(0).Average());
                }

                logger.LogInformation("resumed from {Folder} at step {Step}/{TotalSteps}", resumeFolder, startStep, totalSteps);
            }

            model.GradientCheckpointing = options.GradientCheckpointing;
            model.train();
            for (int epoch = startStep / stepsPerEpoch + 1; epoch <= options.Epochs; epoch++)
            {
                int[] order = EpochShuffle.Order(data.Count, options.Seed, epoch - 1, options.Shuffle);
                var microBatches = order.Chunk(options.PerDeviceBatchSize).ToList();
                for (int first = 0; first < microBatches.Count; first += options.GradientAccumulationSteps)
                {
                    if ((epoch - 1) * stepsPerEpoch + (first / options.GradientAccumulationSteps) < startStep)
                    {
                        continue; // taken before the resumed checkpoint
                    }

                    clock.Start();
                    var stepWatch = Stopwatch.StartNew();
                    var group = microBatches.Skip(first).Take(options.GradientAccumulationSteps).ToList();
                    StepLosses losses = AccumulateStep(model, data, group, device, cancellationToken);
                    Tensor norm = GradientClipping.ClipGradNorm(setup.Parameters, options.MaxGradNorm, flat);
                    double learningRate = options.LearningRateAt(step + 1, totalSteps);
                    step++;
                    if (checkEachStep && NonFinite(losses, norm) is string values)
                    {
                        // Caught before the update: drop the gradients, then stop or skip.
                        StepAndZeroGrad(optimizer, flat, step: false);
                        stepWatch.Stop();
                        clock.Stop();
                        if (options.NonFiniteStep == NonFiniteStepPolicy.Stop)
                        {
                            if (pending.Count > 0)
                            {
                                Read(null, CancellationToken.None);
                            }

                            throw Diverged(step, epoch, values, Partial(), weightsFinite: true, options);
                        }

                        skipped++;
                        tokens += losses.Tokens;
                        logger.LogWarning("step {Step}/{TotalSteps} epoch {Epoch}: {Values}; the step is skipped (NonFiniteStep = Skip)", step, totalSteps, epoch, values);
                    }
                    else
                    {
                        int lossIndex = queue.Count;
                        foreach (var loss in losses.Losses)
                        {
                            queue.Add(loss);
                        }

                        int normIndex = queue.Add(norm);
                        foreach (var g in optimizer.ParamGroups)
                        {
                            g.LearningRate = learningRate;
                        }

                        StepAndZeroGrad(optimizer, flat, step: true);
                        stepWatch.Stop();
                        clock.Stop();
                        tokens += losses.Tokens;
                        pending.Add(new PendingStep(step, epoch, group.Count, losses.Weights, lossIndex, normIndex, losses.Tokens, losses.TargetTokens,
                            learningRate, stepWatch.Elapsed, tokens, clock.Elapsed));
                    }

                    bool epochEnd = first + options.GradientAccumulationSteps >= microBatches.Count;
                    if (pending.Count > 0 && (epochEnd || step % reportEvery == 0 || step % options.LogEverySteps == 0))
                    {
                        // The read waits for the device: its time belongs to the step that triggered it (and to the run).
                        clock.Start();
                        var readWatch = Stopwatch.StartNew();
                        float[] read = queue.ReadAll();
                        readWatch.Stop();
                        clock.Stop();
                        pending[^1] = pending[^1] with { Elapsed = pending[^1].Elapsed + readWatch.Elapsed, Clock = clock.Elapsed };
                        TrainingStep? diverged = ReportPending(logger, pending, read, steps, totalSteps, options.LogEverySteps, progress, cancellationToken);
                        if (diverged is not null)
                        {
                            throw Diverged(diverged.Step, diverged.Epoch, Describe(diverged.Loss, diverged.GradNorm), Partial(), weightsFinite: false, options);
                        }
                    }

                    if (options.CheckpointFolder is not null && options.SaveEverySteps is int every && (step % every == 0 || step == totalSteps))
                    {
                        SaveCheckpoint();
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

                if (epochSteps == 0)
                {
                    throw new TrainingDivergedException(
                        $"Every step of epoch {epoch} (up to step {step}) had a non-finite loss or gradient norm and was skipped. {Advice(options)}",
                        step, Partial(), weightsFinite: true);
                }

                double epochLoss = epochLossSum / epochSteps;
                epochLosses.Add(epochLoss);
                logger.LogInformation("epoch {Epoch}/{Epochs}: mean loss {Loss:F4}", epoch, options.Epochs, epochLoss);
                if (options.CheckpointFolder is not null && options.SaveEverySteps is null)
                {
                    SaveCheckpoint();
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
                ReportPending(logger, pending, values, steps, totalSteps, options.LogEverySteps, progress: null, CancellationToken.None);
            }

            throw new TrainingCanceledException(Partial(), step, totalSteps, cancellationToken);
        }
        finally
        {
            clock.Stop();
            queue.Dispose();
            StepAndZeroGrad(optimizer, flat, step: false);
            model.GradientCheckpointing = wasCheckpointing;
            model.train(wasTraining);
        }

        return new TrainingResult(steps, epochLosses, tokens, clock.Elapsed, checkpoints) { SkippedSteps = skipped };
    }

    /// <summary>The checkpoint to resume from (<see cref="TrainingOptions.ResumeFrom"/>), after recovering an interrupted save of it; null for none.</summary>
    private static string? ResolveResume(TrainingOptions options)
    {
        if (options.ResumeFrom is not string from)
        {
            return null;
        }

        if (from != TrainingOptions.Latest)
        {
            string full = Path.GetFullPath(from);
            StagedFolder.Recover(full);
            if (!Directory.Exists(full))
            {
                throw new DirectoryNotFoundException($"{options.GetType().Name}.{nameof(TrainingOptions.ResumeFrom)} '{full}' does not exist.");
            }

            return full;
        }

        string folder = Path.GetFullPath(options.CheckpointFolder!);
        if (Directory.Exists(folder))
        {
            // A checkpoint whose save was interrupted mid-swap exists only as a hidden folder: recover it first.
            foreach (string hidden in Directory.GetDirectories(folder, ".checkpoint-*"))
            {
                var m = HiddenCheckpoint.Match(Path.GetFileName(hidden));
                if (m.Success)
                {
                    StagedFolder.Recover(Path.Combine(folder, m.Groups[1].Value));
                }
            }
        }

        var latest = Directory.Exists(folder)
            ? Directory.GetDirectories(folder, "checkpoint-*")
                .Select(d => (Path: d, Match: CheckpointName.Match(Path.GetFileName(d))))
                .Where(c => c.Match.Success && File.Exists(Path.Combine(c.Path, TrainerState.FileName)))
                .OrderByDescending(c => long.Parse(c.Match.Groups[1].Value, CultureInfo.InvariantCulture))
                .Select(c => c.Path)
                .FirstOrDefault()
            : null;
        return latest ?? throw new ArgumentException(
            $"{options.GetType().Name}.{nameof(TrainingOptions.ResumeFrom)} is \"latest\" but '{folder}' holds no checkpoint-{{step}} folder with {TrainerState.FileName}.", "options");
    }

    private static readonly Regex CheckpointName = new(@"^checkpoint-([0-9]{1,9})$", RegexOptions.CultureInvariant);

    private static readonly Regex HiddenCheckpoint = new(@"^\.(checkpoint-[0-9]{1,9})\.[0-9a-f]{32}\.(?:new|old|tmp)$", RegexOptions.CultureInvariant);

    /// <summary>
    /// Before the first step: the checkpoint folder must be a folder (created here), and no checkpoint the run will write
    /// may exist unless <see cref="TrainingOptions.OverwriteCheckpoints"/> is set.
    /// </summary>
    private static void CheckOutputFolder(TrainingOptions options, IReadOnlyList<int> checkpointSteps)
    {
        if (options.CheckpointFolder is not string folder)
        {
            return;
        }

        string option = $"{options.GetType().Name}.{nameof(TrainingOptions.CheckpointFolder)}";
        string full = Path.GetFullPath(folder);
        if (File.Exists(full))
        {
            throw new ArgumentException($"{option} '{full}' is a file, not a folder; no step was taken.", "options");
        }

        try
        {
            Directory.CreateDirectory(full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{option} '{full}' cannot be created ({e.Message}); no step was taken.", e);
        }

        if (!options.OverwriteCheckpoints)
        {
            var existing = checkpointSteps.Select(s => Path.Combine(full, $"checkpoint-{s}"))
                .Where(p => Directory.Exists(p) || File.Exists(p))
                .ToList();
            if (existing.Count > 0)
            {
                throw new ArgumentException(
                    $"{option} '{full}' already holds {string.Join(", ", existing.Select(Path.GetFileName))}, which this run would write; " +
                    $"choose another folder, delete them, or set {nameof(TrainingOptions.OverwriteCheckpoints)} = true. No step was taken.", "options");
            }
        }
    }

    /// <summary>"loss NaN, gradient norm 1.2E+20" when the step's loss or norm is not finite (one read of a device flag); null otherwise.</summary>
    private static string? NonFinite(StepLosses losses, Tensor norm)
    {
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        Tensor flag = norm.isfinite();
        foreach (var l in losses.Losses)
        {
            flag = flag.logical_and(l.isfinite());
        }

        if (flag.item<bool>())
        {
            return null;
        }

        double loss = 0;
        for (int i = 0; i < losses.Losses.Count; i++)
        {
            loss += losses.Weights[i] * losses.Losses[i].to_type(ScalarType.Float64).item<double>();
        }

        double n = norm.to_type(ScalarType.Float64).item<double>();
        foreach (var l in losses.Losses)
        {
            l.Dispose();
        }

        norm.Dispose();
        return Describe(loss, n);
    }

    private static string Describe(double loss, double gradNorm) =>
        string.Create(CultureInfo.InvariantCulture, $"loss {loss:G4}, gradient norm {gradNorm:G4}");

    private static string Advice(TrainingOptions options) =>
        string.Create(CultureInfo.InvariantCulture,
            $"Lower the learning rate ({options.LearningRate:G4}), set MaxGradNorm, or use NonFiniteStep = Skip to drop such steps.");

    private static TrainingDivergedException Diverged(int step, int epoch, string values, TrainingResult partial, bool weightsFinite, TrainingOptions options) =>
        new($"Training diverged at step {step} (epoch {epoch}): {values}. " +
            (weightsFinite
                ? "The step was not applied: the trained weights are those of the last finite step. "
                : "Its update (and any later ones) were applied, so the trained weights may be non-finite; no checkpoint was written since. ") +
            Advice(options), step, partial, weightsFinite);

    /// <summary>Whether every element of every parameter is finite (one device reduction, one read).</summary>
    private static bool AllFinite(IReadOnlyList<Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        Tensor? flag = null;
        foreach (var p in parameters)
        {
            Tensor f = p.isfinite().all();
            flag = flag is null ? f : flag.logical_and(f);
        }

        return flag is null || flag.item<bool>();
    }

    /// <summary>
    /// Forward and backward of one optimizer step's micro-batches: each micro-batch's mean loss (over its target tokens)
    /// is scaled by its share of the step's target tokens and back-propagated, so the gradients summed over the step are
    /// those of Σ token losses / step target tokens. The forward is loss-only (<see cref="CausalLMInput.LossOnly"/>): the
    /// full float32 logits are never materialised. Nothing is read from the device.
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
                using var output = model.forward(new CausalLMInput(input) { AttentionMask = mask, Labels = labels, LossOnly = true });
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

    /// <summary>The schedule for the start-of-run log line: "constant", or e.g. "cosine, 3 of 100 steps warm-up".</summary>
    private static string DescribeSchedule(TrainingOptions options, int totalSteps) => options.Schedule switch
    {
        LearningRateSchedule.Constant => "constant",
        _ => string.Create(CultureInfo.InvariantCulture,
            $"{options.Schedule.ToString().ToLowerInvariant()} schedule, {options.WarmupStepsFor(totalSteps)} of {totalSteps} steps warm-up"),
    };

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
    /// <returns>The first step whose loss or gradient norm is not finite (it and the steps after it are not added); null when all are.</returns>
    private static TrainingStep? ReportPending(ILogger logger, List<PendingStep> pending, float[] values, List<TrainingStep> steps, int totalSteps, int logEvery,
        IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        var read = new List<TrainingStep>(pending.Count);
        TrainingStep? diverged = null;
        foreach (var p in pending)
        {
            double loss = 0;
            for (int i = 0; i < p.Weights.Length; i++)
            {
                loss += p.Weights[i] * values[p.LossIndex + i];
            }

            double gradNorm = values[p.NormIndex];
            var s = new TrainingStep(p.Step, p.Epoch, p.MicroBatches, loss, gradNorm, p.Tokens, p.Elapsed)
            {
                TargetTokens = p.TargetTokens,
                LearningRate = p.LearningRate,
            };
            if (!double.IsFinite(loss) || !double.IsFinite(gradNorm))
            {
                diverged = s;
                break;
            }

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
                logger.LogInformation("step {Step}/{TotalSteps} epoch {Epoch}: loss {Loss:F4}, grad norm {GradNorm:F4}, lr {LearningRate:G4}, {TokensPerSecond:F0} tokens/s",
                    s.Step, totalSteps, s.Epoch, s.Loss, s.GradNorm, s.LearningRate, tps);
            }

            if (progress is not null)
            {
                progress.Report(new TrainingProgress(s.Step, totalSteps, s.Epoch, s.Loss, s.GradNorm, tps) { LearningRate = s.LearningRate });
                cancellationToken.ThrowIfCancellationRequested();
            }
        }

        return diverged;
    }

    /// <summary>
    /// Optionally steps the optimizer, then zeroes the gradients, inside a dispose scope: TorchSharp's <c>zero_grad</c> creates
    /// a tensor handle per parameter (<c>Tensor.zero_()</c> returns a new handle) that would otherwise be left to the finalizer.
    /// </summary>
    private static void StepAndZeroGrad(optim.Optimizer optimizer, bool step) => StepAndZeroGrad(optimizer, null, step);

    /// <summary>As <see cref="StepAndZeroGrad(optim.Optimizer, bool)"/>, through <paramref name="flat"/> when there is one.</summary>
    private static void StepAndZeroGrad(optim.Optimizer optimizer, FlatAdamW? flat, bool step)
    {
        if (flat is not null)
        {
            if (step)
            {
                flat.Step();
            }

            flat.ZeroGrad();
            return;
        }

        using var scope = NewDisposeScope();
        if (step)
        {
            optimizer.step();
        }

        optimizer.zero_grad();
    }

    /// <summary>What a trainer trains and how it saves a checkpoint.</summary>
    /// <param name="Kind">The run's name in the first log line ("LoRA training", "Full-parameter training").</param>
    /// <param name="Trainable">The trained parameter count for the first log line.</param>
    /// <param name="Parameters">Every trained parameter, in a fixed order: their gradients are clipped together.</param>
    /// <param name="Groups">The AdamW parameter groups (together exactly <paramref name="Parameters"/>); empty groups are skipped.</param>
    /// <param name="WriteCheckpointFiles">Writes the checkpoint's weight files into the (staging) folder given and returns their names.</param>
    /// <param name="LoadCheckpointWeights">Loads the trained weights of a checkpoint folder (to resume).</param>
    /// <param name="CheckpointKind">What a checkpoint holds, for the log ("adapter", "model").</param>
    internal sealed record Setup(string Kind, string Trainable, IReadOnlyList<Parameter> Parameters, IReadOnlyList<ParameterGroup> Groups,
        Func<string, CancellationToken, IReadOnlyList<string>> WriteCheckpointFiles, Action<string> LoadCheckpointWeights, string CheckpointKind);

    /// <summary>Parameters that AdamW updates with one weight decay.</summary>
    /// <param name="Parameters">The parameters.</param>
    /// <param name="WeightDecay">Their decoupled weight decay.</param>
    internal sealed record ParameterGroup(IReadOnlyList<Parameter> Parameters, double WeightDecay);

    /// <summary>The device-side losses of one step (see <see cref="AccumulateStep"/>).</summary>
    internal sealed record StepLosses(IReadOnlyList<Tensor> Losses, double[] Weights, long Tokens, long TargetTokens);

    /// <summary>
    /// A step taken whose loss and norm are still on the device (indices into the pending read), with its learning rate and
    /// the run's tokens and training time up to its end (for its throughput).
    /// </summary>
    private sealed record PendingStep(int Step, int Epoch, int MicroBatches, double[] Weights, int LossIndex, int NormIndex, long Tokens,
        long TargetTokens, double LearningRate, TimeSpan Elapsed, long TokensSoFar, TimeSpan Clock);
}
