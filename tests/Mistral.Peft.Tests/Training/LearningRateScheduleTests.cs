using Mistral.Peft.Training;
using Xunit.Abstractions;

namespace Mistral.Peft.Tests.Training;

/// <summary>
/// The per-step learning rates against Hugging Face's closed forms (<c>transformers.optimization</c>), written out here
/// independently, and their use by the trainers.
/// </summary>
public class LearningRateScheduleTests(ITestOutputHelper output)
{
    // HF's multipliers, as in get_constant_schedule_with_warmup / get_linear_schedule_with_warmup /
    // get_cosine_schedule_with_warmup(num_cycles=0.5), for step index s of T steps with W warm-up steps.
    private static double Reference(LearningRateSchedule schedule, int s, int w, int t)
    {
        if (schedule == LearningRateSchedule.Constant)
        {
            return 1;
        }

        if (s < w)
        {
            return s / (double)Math.Max(1, w);
        }

        double afterWarmup = (s - w) / (double)Math.Max(1, t - w); // progress through the decay, 0 at its start
        return schedule switch
        {
            LearningRateSchedule.ConstantWithWarmup => 1,
            LearningRateSchedule.Linear => Math.Max(0, (t - s) / (double)Math.Max(1, t - w)),
            LearningRateSchedule.Cosine => Math.Max(0, 0.5 * (1 + Math.Cos(Math.PI * afterWarmup))),
            _ => throw new ArgumentOutOfRangeException(nameof(schedule)),
        };
    }

    // TrainingArguments.get_warmup_steps: warmup_steps if > 0 else math.ceil(num_training_steps * warmup_ratio).
    private static int ReferenceWarmup(int totalSteps, double ratio, int steps) => steps > 0 ? steps : (int)Math.Ceiling(totalSteps * ratio);

    [Theory]
    [InlineData(LearningRateSchedule.ConstantWithWarmup)]
    [InlineData(LearningRateSchedule.Linear)]
    [InlineData(LearningRateSchedule.Cosine)]
    public void EveryStepsRateIsHuggingFacesClosedForm(LearningRateSchedule schedule)
    {
        int cases = 0;
        foreach (int total in new[] { 1, 2, 3, 7, 10, 64, 100 })
        {
            foreach (double ratio in new[] { 0, 0.03, 0.07, 0.1, 0.5, 1 })
            {
                foreach (int warmupSteps in new[] { 0, 1, 5, 200 })
                {
                    var options = new TrainingOptions { LearningRate = 3e-4, Schedule = schedule, WarmupRatio = ratio, WarmupSteps = warmupSteps };
                    int w = ReferenceWarmup(total, ratio, warmupSteps);
                    options.WarmupStepsFor(total).Should().Be(w);
                    for (int step = 1; step <= total; step++)
                    {
                        double expected = 3e-4 * Reference(schedule, step - 1, w, total);
                        options.LearningRateAt(step, total).Should().Be(expected, $"{schedule}, step {step} of {total}, {w} warm-up steps");
                        cases++;
                    }
                }
            }
        }

        output.WriteLine($"{schedule}: {cases} steps equal to the closed form");
    }

    [Fact]
    public void SmallSchedulesHaveTheseRates()
    {
        // Linear, T = 5, W = 2: s/2 for s < 2, then (5 − s)/3.
        var linear = new TrainingOptions { LearningRate = 1, Schedule = LearningRateSchedule.Linear, WarmupSteps = 2 };
        Enumerable.Range(1, 5).Select(s => linear.LearningRateAt(s, 5)).Should().Equal([0, 0.5, 1, 2 / 3.0, 1 / 3.0], (a, b) => Math.Abs(a - b) < 1e-15);

        // Cosine, T = 5, W = 1: 0, then ½(1 + cos(π p)) with p = 0, ¼, ½, ¾.
        var cosine = new TrainingOptions { LearningRate = 1, Schedule = LearningRateSchedule.Cosine, WarmupSteps = 1 };
        Enumerable.Range(1, 5).Select(s => cosine.LearningRateAt(s, 5)).Should().Equal(
            [0, 1, 0.5 + (Math.Sqrt(2) / 4), 0.5, 0.5 - (Math.Sqrt(2) / 4)], (a, b) => Math.Abs(a - b) < 1e-15);

        // Constant with warm-up, ratio 0.5 of 4 steps: 2 warm-up steps.
        var constant = new TrainingOptions { LearningRate = 1, Schedule = LearningRateSchedule.ConstantWithWarmup, WarmupRatio = 0.5 };
        Enumerable.Range(1, 4).Select(s => constant.LearningRateAt(s, 4)).Should().Equal(0, 0.5, 1, 1);

        // Without warm-up the first step runs at the full rate.
        new TrainingOptions { LearningRate = 2e-4, Schedule = LearningRateSchedule.Linear }.LearningRateAt(1, 10).Should().Be(2e-4);
    }

    [Fact]
    public void WarmupStepsAreComputedAsPythonComputesThem()
    {
        var options = new TrainingOptions { Schedule = LearningRateSchedule.Linear, WarmupRatio = 0.07 };
        options.WarmupStepsFor(100).Should().Be(8, "100 * 0.07 is 7.000000000000001 in double precision, and math.ceil gives 8");
        (options with { WarmupRatio = 0.03 }).WarmupStepsFor(100).Should().Be(3, "100 * 0.03 is exactly 3.0");
        (options with { WarmupRatio = 0.03 }).WarmupStepsFor(10).Should().Be(1);
        (options with { WarmupSteps = 4 }).WarmupStepsFor(100).Should().Be(4, "positive warm-up steps take precedence over the ratio");
        (options with { Schedule = LearningRateSchedule.Constant }).WarmupStepsFor(100).Should().Be(0, "the constant schedule has no warm-up");
    }

    [Fact]
    public void TheConstantScheduleIgnoresWarmupExactlyAsBefore()
    {
        var study = LoraTrainingOptions.Study with { WarmupSteps = 3 };
        Enumerable.Range(1, 50).Select(s => study.LearningRateAt(s, 50)).Should().OnlyContain(lr => lr == 2e-4);
    }

    [Theory]
    [InlineData(LearningRateSchedule.Constant)]
    [InlineData(LearningRateSchedule.Cosine)]
    [InlineData(LearningRateSchedule.Linear)]
    public void TheTrainerRecordsAndReportsEachStepsRate(LearningRateSchedule schedule)
    {
        // 7 blocks, batch 2 × accumulation 2: 2 steps per epoch (the second a partial accumulation) × 3 epochs = 6 steps.
        var data = TrainingFixture.RandomBlocks(7);
        using var f = new TrainingFixture();
        var progress = new ListProgress();
        var options = new LoraTrainingOptions
        {
            Epochs = 3, PerDeviceBatchSize = 2, GradientAccumulationSteps = 2, LearningRate = 1e-3, Schedule = schedule, WarmupRatio = 0.3,
            GradientCheckpointing = false,
        };
        var result = new LoraTrainer().Train(f.Model, f.Lora, data, options, progress);
        int w = schedule == LearningRateSchedule.Constant ? 0 : ReferenceWarmup(6, 0.3, 0);
        double[] expected = [.. Enumerable.Range(0, 6).Select(s => 1e-3 * Reference(schedule, s, w, 6))];
        output.WriteLine($"{schedule}: {string.Join(" ", result.Steps.Select(s => s.LearningRate.ToString("R")))}");
        result.Steps.Select(s => s.LearningRate).Should().Equal(expected);
        progress.Reports.Select(p => p.LearningRate).Should().Equal(expected);
        if (schedule != LearningRateSchedule.Constant)
        {
            w.Should().Be(2);
            expected[0].Should().Be(0);
        }
    }

    [Fact]
    public void AWarmupStepAtRateZeroLeavesTheWeightsUnchanged()
    {
        // One step whose rate is 0 (the first warm-up step): neither Adam's update nor the decoupled decay moves a weight,
        // for the LoRA path and the full-parameter path alike — the optimizer really uses the scheduled rate.
        var data = TrainingFixture.RandomBlocks(4);
        var options = new LoraTrainingOptions
        {
            PerDeviceBatchSize = 4, GradientAccumulationSteps = 1, Schedule = LearningRateSchedule.ConstantWithWarmup, WarmupSteps = 1,
            LearningRate = 1e-2, WeightDecay = 0.1,
        };
        using var f = new TrainingFixture();
        var before = f.Weights();
        new LoraTrainer().Train(f.Model, f.Lora, data, options).Steps.Should().ContainSingle().Which.LearningRate.Should().Be(0);
        TrainingFixture.MaxAbsDiff(before, f.Weights()).Should().Be(0);

        using var model = TinyModels.RandomModel(seed: 1);
        var all = FullTrainingTests.Snapshot(model);
        new CausalLMTrainer().Train(model, TrainableSelection.All, data, options);
        FullTrainingTests.Changed(all, FullTrainingTests.Snapshot(model)).Should().BeEmpty();

        // The next step (rate 1e-2 after a one-step warm-up of a two-step run) does move them.
        var moved = new CausalLMTrainer().Train(model, TrainableSelection.All, TrainingFixture.RandomBlocks(8), options);
        moved.Steps.Select(s => s.LearningRate).Should().Equal(0, 1e-2);
        FullTrainingTests.Snapshot(model)["lm_head.weight"].Should().NotEqual(all["lm_head.weight"]);
    }
}
