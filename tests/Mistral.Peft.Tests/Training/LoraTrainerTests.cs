using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

public class LoraTrainerTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(2e-4, 1e-8)] // the study's learning rate and HF's eps
    [InlineData(1.0, 1.0)] // eps 1 makes AdamW's first step ≈ lr·g/(|g|+1): the weights then measure the gradients themselves
    public void GradientAccumulationOfTwoHalfBatchesEqualsOneFullBatch(double lr, double eps)
    {
        // AdamW's first step is lr·g/(|g| + eps): with eps 1e-8 it is ≈ lr·sign(g), blind to gradient errors except where
        // |g| ~ eps, where it amplifies them by lr/eps; the second case is linear in g, so it checks the gradients too.
        var data = TrainingFixture.RandomBlocks(4);
        using var full = new TrainingFixture();
        using var halves = new TrainingFixture();
        var before = full.Weights();
        var common = new LoraTrainingOptions { Epochs = 1, LearningRate = lr, AdamEpsilon = eps, GradientCheckpointing = false };
        var a = new LoraTrainer().Train(full.Model, full.Lora, data, common with { PerDeviceBatchSize = 4, GradientAccumulationSteps = 1 });
        var b = new LoraTrainer().Train(halves.Model, halves.Lora, data, common with { PerDeviceBatchSize = 2, GradientAccumulationSteps = 2 });

        a.Steps.Should().ContainSingle().Which.MicroBatches.Should().Be(1);
        b.Steps.Should().ContainSingle().Which.MicroBatches.Should().Be(2);
        double diff = TrainingFixture.MaxAbsDiff(full.Weights(), halves.Weights());
        double moved = TrainingFixture.MaxAbsDiff(before, full.Weights());
        output.WriteLine($"lr {lr} eps {eps}: loss {a.Steps[0].Loss:R} vs {b.Steps[0].Loss:R}; grad norm {a.Steps[0].GradNorm:R} vs {b.Steps[0].GradNorm:R}; max |Δw| between runs {diff:E2}, step size {moved:E2}");
        diff.Should().BeLessThanOrEqualTo(1e-6);
        diff.Should().BeLessThanOrEqualTo(1e-3 * moved);
        b.Steps[0].Loss.Should().BeApproximately(a.Steps[0].Loss, 1e-5);
        b.Steps[0].GradNorm.Should().BeApproximately(a.Steps[0].GradNorm, 1e-5 * a.Steps[0].GradNorm);
        a.Steps[0].Tokens.Should().Be(48);
    }

    [Fact]
    public void ReportedGradNormIsBeforeClippingAndTheAdamWUpdateUsesTheClippedGradient()
    {
        // One step, batch 4 × accumulation 1, no shuffle: the trainer's gradient is that of one forward/backward on the 4
        // blocks in order. AdamW's first step (weight decay 0) moves each weight by −lr·g/(|g| + eps) for the gradient g
        // it sees, so a clipped gradient (elements near eps) gives visibly smaller moves than the unclipped one (≈ lr).
        var data = TrainingFixture.RandomBlocks(4);
        double lr = 1e-2, maxNorm = 1e-7, eps = 1e-8;
        List<float[]> grads;
        double norm;
        using (var reference = new TrainingFixture())
        {
            reference.Model.train();
            using var ids = tensor(data.Blocks.SelectMany(x => x).Select(x => (long)x).ToArray(), [4, 12]);
            // The trainer's forward (loss only): the same gradient bit for bit.
            using (var o = reference.Model.forward(new CausalLMInput(ids) { Labels = ids, LossOnly = true }))
            {
                o.Loss!.backward();
            }

            grads = reference.Lora.AdapterParameters().Select(p => p.grad!.data<float>().ToArray()).ToList();
            norm = Math.Sqrt(grads.SelectMany(g => g).Sum(x => (double)x * x));
        }

        var options = new LoraTrainingOptions { PerDeviceBatchSize = 4, GradientAccumulationSteps = 1, LearningRate = lr, Shuffle = false, MaxGradNorm = maxNorm };
        foreach (double? clip in new double?[] { maxNorm, null })
        {
            using var f = new TrainingFixture();
            var before = f.Weights();
            var result = new LoraTrainer().Train(f.Model, f.Lora, data, options with { MaxGradNorm = clip });
            result.Steps[0].GradNorm.Should().BeApproximately(norm, 1e-5 * norm, "the pre-clip norm is reported");
            double coef = clip is double m ? Math.Min(1, m / (norm + 1e-6)) : 1; // PyTorch's clip_grad_norm_ coefficient
            double worst = 0, largest = 0;
            var after = f.Weights();
            for (int t = 0; t < grads.Count; t++)
            {
                for (int i = 0; i < grads[t].Length; i++)
                {
                    double g = grads[t][i] * coef;
                    double expected = -lr * g / (Math.Abs(g) + eps);
                    double actual = (double)after[t][i] - before[t][i];
                    worst = Math.Max(worst, Math.Abs(actual - expected));
                    largest = Math.Max(largest, Math.Abs(actual));
                }
            }

            output.WriteLine($"clip {clip?.ToString() ?? "none"}: grad norm {result.Steps[0].GradNorm:R} (reference {norm:R}), max |Δw| {largest:E3}, max |Δw − expected| {worst:E2}");
            worst.Should().BeLessThanOrEqualTo(2e-8);
            if (clip is null)
            {
                largest.Should().BeGreaterThan(0.99 * lr);
            }
            else
            {
                largest.Should().BeLessThanOrEqualTo(lr * maxNorm / (maxNorm + eps) + 2e-8); // |g_clipped| ≤ maxNorm bounds every move
            }
        }
    }

    [Fact]
    public void TrainingReducesTheLossAndGradientCheckpointingChangesNothing()
    {
        // A repetitive corpus: the same 5-token phrase over and over, packed into 12-token blocks.
        int[] phrase = [10, 11, 12, 13, 14];
        var data = new SftPacker(new SftPackingOptions { SequenceLength = 12 }).Pack(Enumerable.Repeat<IReadOnlyList<int>>(phrase, 24));
        data.Count.Should().Be(14);
        var options = new LoraTrainingOptions { Epochs = 16, PerDeviceBatchSize = 4, GradientAccumulationSteps = 2, LearningRate = 3e-2, Seed = 7 };
        var runs = new List<(TrainingResult Result, List<float[]> Weights)>();
        foreach (bool checkpointing in new[] { true, false })
        {
            using var f = new TrainingFixture(allLinear: true);
            var result = new LoraTrainer().Train(f.Model, f.Lora, data, options with { GradientCheckpointing = checkpointing });
            runs.Add((result, f.Weights()));
            f.Model.training.Should().BeFalse("the previous (eval) mode is restored");
            f.Model.GradientCheckpointing.Should().BeFalse("the previous setting is restored");
        }

        var r = runs[0].Result;
        output.WriteLine($"epoch losses {string.Join(" ", r.EpochLosses.Select(l => l.ToString("F4")))}; {r.Steps.Count} steps, {r.TokensPerSecond:F0} tokens/s");
        r.Steps.Should().HaveCount(16 * 2); // 14 blocks → 4 micro-batches → 2 steps per epoch
        r.Tokens.Should().Be(16 * 14 * 12);
        r.EpochLosses[^1].Should().BeLessThan(0.5 * r.EpochLosses[0]);
        runs[1].Result.Steps.Select(s => s.Loss).Should().Equal(r.Steps.Select(s => s.Loss), "checkpointing is bit-identical on CPU");
        runs[1].Result.Steps.Select(s => s.GradNorm).Should().Equal(r.Steps.Select(s => s.GradNorm));
        TrainingFixture.MaxAbsDiff(runs[0].Weights, runs[1].Weights).Should().Be(0);
    }

    [Fact]
    public void ATrailingPartialAccumulationIsSteppedAndWeightedByItsBlocks()
    {
        // 5 blocks, batch 2 × accumulation 2: micro-batches of 2, 2, 1 → a full step and a step of one 1-block micro-batch.
        var data = TrainingFixture.RandomBlocks(5);
        using var f = new TrainingFixture();
        var result = new LoraTrainer().Train(f.Model, f.Lora, data, new LoraTrainingOptions { PerDeviceBatchSize = 2, GradientAccumulationSteps = 2 });
        result.Steps.Select(s => (s.MicroBatches, s.Tokens)).Should().Equal((2, 48L), (1, 12L));
        result.Steps.Select(s => s.Step).Should().Equal(1, 2);
        result.EpochLosses.Should().ContainSingle().Which.Should().BeApproximately(result.Steps.Average(s => s.Loss), 1e-12);
    }

    [Fact]
    public void ProgressIsReportedAfterEveryStepAndTheShuffleIsSeeded()
    {
        var data = TrainingFixture.RandomBlocks(8);
        using var f = new TrainingFixture();
        var progress = new ListProgress();
        var options = new LoraTrainingOptions { Epochs = 2, PerDeviceBatchSize = 2, GradientAccumulationSteps = 2, GradientCheckpointing = false };
        var result = new LoraTrainer().Train(f.Model, f.Lora, data, options, progress);
        progress.Reports.Select(p => (p.Step, p.TotalSteps, p.Epoch)).Should().Equal((1, 4, 1), (2, 4, 1), (3, 4, 2), (4, 4, 2));
        progress.Reports.Select(p => p.Loss).Should().Equal(result.Steps.Select(s => s.Loss));
        progress.Reports.Should().OnlyContain(p => p.TokensPerSecond > 0 && p.GradNorm > 0);

        int[] e0 = EpochShuffle.Order(100, 42, 0, shuffle: true);
        e0.Order().Should().Equal(Enumerable.Range(0, 100));
        EpochShuffle.Order(100, 42, 0, shuffle: true).Should().Equal(e0);
        EpochShuffle.Order(100, 42, 1, shuffle: true).Should().NotEqual(e0);
        EpochShuffle.Order(100, 43, 0, shuffle: true).Should().NotEqual(e0);
        EpochShuffle.Order(5, 42, 0, shuffle: false).Should().Equal(0, 1, 2, 3, 4);
    }

    [Fact]
    public void CancellationStopsBetweenMicroBatchesAndLeavesTheModelUsable()
    {
        var data = TrainingFixture.RandomBlocks(8);
        using var f = new TrainingFixture();
        var options = new LoraTrainingOptions { Epochs = 2, PerDeviceBatchSize = 2, GradientAccumulationSteps = 2 };
        using var cts = new CancellationTokenSource();
        var progress = new ListProgress(_ => cts.Cancel()); // cancel after the first step
        FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, data, options, progress, cts.Token))
            .Should().Throw<OperationCanceledException>();
        progress.Reports.Should().ContainSingle();
        f.Model.training.Should().BeFalse();
        f.Model.GradientCheckpointing.Should().BeFalse();
        f.Lora.AdapterParameters().Select(p => p.grad is null ? 0f : p.grad.abs().max().item<float>()).Should().OnlyContain(m => m == 0);

        // The adapters hold the one step taken; the model trains again normally.
        var again = new LoraTrainer().Train(f.Model, f.Lora, data, options);
        again.Steps.Should().HaveCount(4);

        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var before = f.Weights();
        FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, data, options, null, cancelled.Token))
            .Should().Throw<OperationCanceledException>();
        TrainingFixture.MaxAbsDiff(before, f.Weights()).Should().Be(0);
    }

    [Fact]
    public void EachEpochIsCheckpointedAsAPeftAdapterThatLoadsBack()
    {
        var data = TrainingFixture.RandomBlocks(4);
        string root = TestPaths.TempDir();
        try
        {
            using var f = new TrainingFixture();
            var result = new LoraTrainer().Train(f.Model, f.Lora, data, new LoraTrainingOptions
            {
                Epochs = 2, PerDeviceBatchSize = 2, GradientAccumulationSteps = 1, CheckpointFolder = root, BaseModelNameOrPath = "tiny",
            });
            result.Checkpoints.Should().Equal(Path.Combine(root, "checkpoint-2"), Path.Combine(root, "checkpoint-4"));
            using var g = new TrainingFixture();
            PeftAdapter.LoadWeights(g.Lora, result.Checkpoints[^1]);
            TrainingFixture.MaxAbsDiff(f.Weights(), g.Weights()).Should().Be(0);
            PeftAdapter.ReadConfig(result.Checkpoints[0]).BaseModelNameOrPath.Should().Be("tiny");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void SaveEveryStepsCheckpointsTheAdapterEveryNStepsAndAtTheEnd()
    {
        // 5 blocks, batch 1 × accumulation 1: 5 steps; every 2 steps and the last: checkpoint-2, -4, -5.
        var data = TrainingFixture.RandomBlocks(5);
        string root = TestPaths.TempDir();
        try
        {
            using var f = new TrainingFixture();
            var weights = new Dictionary<int, List<float[]>>();
            var progress = new ListProgress(p => weights[p.Step] = f.Weights());
            var result = new LoraTrainer().Train(f.Model, f.Lora, data, new LoraTrainingOptions
            {
                PerDeviceBatchSize = 1, GradientAccumulationSteps = 1, CheckpointFolder = root, SaveEverySteps = 2, ReportEverySteps = 1,
            }, progress);
            result.Checkpoints.Select(Path.GetFileName).Should().Equal("checkpoint-2", "checkpoint-4", "checkpoint-5");
            foreach (var (folder, step) in result.Checkpoints.Zip(new[] { 2, 4, 5 }))
            {
                using var g = new TrainingFixture();
                PeftAdapter.LoadWeights(g.Lora, folder);
                TrainingFixture.MaxAbsDiff(weights[step], g.Weights()).Should().Be(0);
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void BadArgumentsAreRejected()
    {
        using var f = new TrainingFixture();
        using var other = new TrainingFixture();
        var data = TrainingFixture.RandomBlocks(2);
        var trainer = new LoraTrainer();
        FluentActions.Invoking(() => trainer.Train(other.Model, f.Lora, data, new LoraTrainingOptions()))
            .Should().Throw<ArgumentException>().WithMessage("*lora.Model*");
        FluentActions.Invoking(() => trainer.Train(f.Model, f.Lora, new PackedDataset([], 4), new LoraTrainingOptions()))
            .Should().Throw<ArgumentException>().WithMessage("*no blocks*");
        FluentActions.Invoking(() => trainer.Train(f.Model, f.Lora, data, new LoraTrainingOptions { Epochs = 0 }))
            .Should().Throw<ArgumentException>().WithMessage("*Epochs*");
    }
}
