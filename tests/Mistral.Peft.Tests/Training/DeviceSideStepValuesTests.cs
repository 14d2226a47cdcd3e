using Microsoft.Extensions.Logging;
using Mistral.Core.Modeling;
using Mistral.Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

/// <summary>
/// Step losses and gradient norms stay on the device until they are read (no host synchronization per micro-batch), and
/// the numbers are exactly those of the synchronous algorithm (<c>item()</c> per micro-batch, <c>clip_grad_norm_</c>).
/// </summary>
public class DeviceSideStepValuesTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(0.05, true)]
    [InlineData(null, false)]
    public void LossesNormsAndWeightsAreBitIdenticalToTheSynchronousAlgorithm(double? maxGradNorm, bool checkpointing)
    {
        // 7 blocks, batch 2 × accumulation 2: micro-batches of 2, 2 | 2, 1 — the second step weights its micro-batches 2/3, 1/3.
        var data = TrainingFixture.RandomBlocks(7);
        var options = new LoraTrainingOptions
        {
            Epochs = 2, PerDeviceBatchSize = 2, GradientAccumulationSteps = 2, LearningRate = 1e-2, MaxGradNorm = maxGradNorm,
            GradientCheckpointing = checkpointing, LogEverySteps = 3,
        };
        using var trained = new TrainingFixture();
        var result = new LoraTrainer().Train(trained.Model, trained.Lora, data, options);
        using var reference = new TrainingFixture();
        var expected = SynchronousReference(reference, data, options);

        output.WriteLine($"losses {string.Join(" ", result.Steps.Select(s => s.Loss.ToString("R")))}; norms {string.Join(" ", result.Steps.Select(s => s.GradNorm.ToString("R")))}");
        result.Steps.Select(s => s.Loss).Should().Equal(expected.Select(e => e.Loss));
        result.Steps.Select(s => s.GradNorm).Should().Equal(expected.Select(e => e.Norm));
        TrainingFixture.MaxAbsDiff(trained.Weights(), reference.Weights()).Should().Be(0);
        if (maxGradNorm is double max)
        {
            result.Steps.Should().OnlyContain(s => s.GradNorm > max, "clipping is exercised at every step");
        }

        result.Steps.Select(s => s.TargetTokens).Should().Equal(4 * 11L, 3 * 11L, 4 * 11L, 3 * 11L);
        double stepSeconds = result.Steps.Sum(s => s.Elapsed.TotalSeconds); // the steps (reads included) make up the run's time
        stepSeconds.Should().BeLessThanOrEqualTo(result.Elapsed.TotalSeconds).And.BeGreaterThan(0.9 * result.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// The trainer as it was before step values stayed on the device: item() per micro-batch, clip_grad_norm_. Its forward
    /// is the trainer's (loss only, chunked lm_head + cross-entropy), so losses and weights compare bit for bit.
    /// </summary>
    private static List<(double Loss, double Norm)> SynchronousReference(TrainingFixture f, PackedDataset data, LoraTrainingOptions o)
    {
        var parameters = f.Lora.AdapterParameters();
        var steps = new List<(double, double)>();
        using var optimizer = optim.AdamW(parameters, lr: o.LearningRate, beta1: o.AdamBeta1, beta2: o.AdamBeta2, eps: o.AdamEpsilon, weight_decay: o.WeightDecay);
        f.Model.GradientCheckpointing = o.GradientCheckpointing;
        f.Model.train();
        for (int epoch = 0; epoch < o.Epochs; epoch++)
        {
            var microBatches = EpochShuffle.Order(data.Count, o.Seed, epoch, o.Shuffle).Chunk(o.PerDeviceBatchSize).ToList();
            for (int first = 0; first < microBatches.Count; first += o.GradientAccumulationSteps)
            {
                var group = microBatches.Skip(first).Take(o.GradientAccumulationSteps).ToList();
                int groupBlocks = group.Sum(b => b.Length);
                double stepLoss = 0;
                foreach (int[] batch in group)
                {
                    double weight = (double)batch.Length / groupBlocks;
                    using var scope = NewDisposeScope();
                    var ids = batch.SelectMany(b => data.Blocks[b]).Select(x => (long)x).ToArray();
                    Tensor input = tensor(ids, [batch.Length, data.SequenceLength]);
                    using var output = f.Model.forward(new CausalLMInput(input) { Labels = input, LossOnly = true });
                    (output.Loss! * weight).backward();
                    stepLoss += weight * output.Loss!.item<float>();
                }

                using (NewDisposeScope())
                {
                    double norm = nn.utils.clip_grad_norm_(parameters, o.MaxGradNorm ?? double.PositiveInfinity);
                    optimizer.step();
                    optimizer.zero_grad();
                    steps.Add((stepLoss, norm));
                }
            }
        }

        f.Model.GradientCheckpointing = false;
        f.Model.eval();
        return steps;
    }

    [Theory]
    [InlineData(3, 0.3)]    // clipped (the norm of these gradients is ≈ 17.5)
    [InlineData(3, 1e3)]    // not clipped: coefficient clamped to 1
    [InlineData(3, null)]   // no clipping
    [InlineData(1, 0.3)]    // a lone gradient: its own norm, not a norm of norms
    public void DeviceClippingEqualsClipGradNormBitForBit(int count, double? maxNorm)
    {
        using var gen = new Generator(17);
        long[][] shapes = [[4, 32], [48, 4], [7]];
        var ours = new List<Parameter>();
        var theirs = new List<Parameter>();
        for (int i = 0; i < count; i++)
        {
            using var w = randn(shapes[i], generator: gen);
            using var g = randn(shapes[i], generator: gen);
            ours.Add(new Parameter(w.clone()) { grad = g.clone() });
            theirs.Add(new Parameter(w.clone()) { grad = g.clone() });
        }

        double expected = nn.utils.clip_grad_norm_(theirs, maxNorm ?? double.PositiveInfinity);
        using var norm = GradientClipping.ClipGradNorm(ours, maxNorm);
        double actual = norm.item<float>();
        output.WriteLine($"{count} gradients, max norm {maxNorm?.ToString() ?? "none"}: norm {actual:R} (clip_grad_norm_ {expected:R})");
        actual.Should().Be(expected);
        for (int i = 0; i < count; i++)
        {
            TensorChecks.Exactly(ours[i].grad!, theirs[i].grad!).Should().BeTrue($"gradient {i} is clipped identically");
        }

        if (maxNorm is 0.3)
        {
            using var clipped = stack(ours.Select(p => p.grad!.norm(2f))).norm(2f);
            clipped.item<float>().Should().BeApproximately(0.3f, 1e-6f);
        }

        foreach (var p in ours.Concat(theirs))
        {
            p.Dispose();
        }
    }

    [Fact]
    public void ValuesAreReadAndReportedInBurstsAtLogStepsAndEpochEnds()
    {
        // 7 steps of one block each, LogEverySteps 3: reads after steps 3, 6 and 7 (the epoch's end). When a burst is
        // reported the adapters already hold the burst's last step, so the weights seen by the reports of one burst agree.
        var data = TrainingFixture.RandomBlocks(7);
        var options = new LoraTrainingOptions { PerDeviceBatchSize = 1, GradientAccumulationSteps = 1, LogEverySteps = 3, GradientCheckpointing = false };
        var (seen, log) = Run(data, options);
        seen.Select(s => s.Step).Should().Equal(1, 2, 3, 4, 5, 6, 7);
        seen.Select(s => s.WeightSum).Distinct().Should().HaveCount(3);
        seen.GroupBy(s => s.WeightSum).Select(g => g.Select(s => s.Step)).Should().BeEquivalentTo(new[] { new[] { 1, 2, 3 }, [4, 5, 6], [7] }, o => o.WithStrictOrdering());
        log.Where(m => m.StartsWith("step ", StringComparison.Ordinal)).Select(m => m.Split(' ')[1]).Should().Equal("3/7", "6/7", "7/7");

        // ReportEverySteps 1 reads after every step: every report sees its own step's weights; log lines stay every 3 steps.
        var (each, eachLog) = Run(data, options with { ReportEverySteps = 1 });
        each.Select(s => s.WeightSum).Distinct().Should().HaveCount(7);
        eachLog.Where(m => m.StartsWith("step ", StringComparison.Ordinal)).Should().HaveCount(3);

        // ReportEverySteps 2 with LogEverySteps 3: reads after steps 2, 3, 4, 6 and 7.
        var (two, _) = Run(data, options with { ReportEverySteps = 2 });
        two.GroupBy(s => s.WeightSum).Select(g => g.Select(s => s.Step)).Should().BeEquivalentTo(new[] { new[] { 1, 2 }, [3], [4], [5, 6], [7] }, o => o.WithStrictOrdering());
    }

    [Fact]
    public void TheQueueReadsEveryPendingScalarAsFloat32AndLeavesNoHandle()
    {
        using var tenth = tensor(0.1f);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var queue = new DeviceScalarQueue())
        {
            queue.Add(tensor(1.5f)).Should().Be(0);
            queue.Add(tenth.to_type(ScalarType.BFloat16)).Should().Be(1); // a bf16 norm: converted exactly
            queue.Add(tensor(-2.25)).Should().Be(2);
            queue.ReadAll().Should().Equal(1.5f, (float)(BFloat16)0.1f, -2.25f);
            queue.Count.Should().Be(0);
            queue.ReadAll().Should().BeEmpty();
            queue.Add(tensor(7f));
        }

        DisposeScopeManager.Statistics.ThreadTotalLiveCount.Should().Be(before, "read and pending scalars are disposed");
    }

    private static (List<(int Step, double WeightSum)> Seen, List<string> Log) Run(PackedDataset data, LoraTrainingOptions options)
    {
        using var f = new TrainingFixture();
        var seen = new List<(int, double)>();
        var logger = new TrainerLog();
        var progress = new ListProgress(p => seen.Add((p.Step, f.Weights().Sum(w => w.Sum(x => (double)x)))));
        new LoraTrainer(logger).Train(f.Model, f.Lora, data, options, progress);
        return (seen, logger.Messages);
    }

    private sealed class TrainerLog : ILogger<LoraTrainer>
    {
        public List<string> Messages { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Messages.Add(formatter(state, exception));
    }
}
