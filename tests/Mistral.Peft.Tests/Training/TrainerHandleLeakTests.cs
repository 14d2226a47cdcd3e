using Mistral.Core.Modeling;
using Mistral.Peft.Training;
using TorchSharp;

namespace Mistral.Peft.Tests.Training;

/// <summary>
/// A training step leaves no tensor handle behind: TorchSharp's per-thread live count (created − disposed on this thread,
/// see <c>QuantizedModel/TensorHandleLeakTests</c>) is read in the progress callback, which runs on the training thread.
/// The LoRA path and the full-parameter path (two AdamW groups, a schedule, requires_grad switched and restored,
/// gradients released) are both checked.
/// </summary>
public class TrainerHandleLeakTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static long Live => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    [Theory]
    [InlineData(true, 0.3, false, false, false)]
    [InlineData(false, null, false, false, false)]
    [InlineData(true, 0.3, true, false, false)]
    [InlineData(true, 0.3, false, true, false)]
    [InlineData(false, null, true, true, false)]
    // bf16 model, all-linear LoRA: float32 adapters over bf16 inputs (LoraInputProjectionFunction). The checkpointed case
    // fails on the input-lifting leak fixed in 71b74c5; without checkpointing the lifted handle only reached a scope that
    // still ends with the step, so that case is coverage, and LoraInputProjectionTests.LeavesTheCallersInputInTheCallersScope
    // guards it.
    [InlineData(true, 0.3, false, false, true)]
    [InlineData(false, 0.3, false, false, true)]
    public void TheLiveTensorCountStaysFlatOverTwentySteps(bool checkpointing, double? maxGradNorm, bool completion, bool full, bool bf16)
    {
        // 23 steps of batch 1 × accumulation 2; the count after step 3 (warm-up: optimizer state, cached tables) must equal
        // the count after every later step. LogEverySteps 1 reads the losses and reports progress after every step.
        TrainingDataset Data(int count) => completion
            ? new SftCompletionBuilder().Build(Enumerable.Range(0, count).Select(i => new TokenizedCompletion(new[] { 5, 6, 7, 8 }[..(1 + (i % 4))], new[] { 9, 10 }[..(1 + (i % 2))])))
            : TrainingFixture.RandomBlocks(count);
        var data = Data(46);
        using var f = new TrainingFixture(dtype: bf16 ? TorchSharp.torch.ScalarType.BFloat16 : TorchSharp.torch.ScalarType.Float32, allLinear: bf16);
        var live = new List<long>();
        var progress = new ListProgress(_ => live.Add(Live));
        var options = new LoraTrainingOptions
        {
            PerDeviceBatchSize = 1, GradientAccumulationSteps = 2, Shuffle = false, LogEverySteps = 1,
            GradientCheckpointing = checkpointing, MaxGradNorm = maxGradNorm,
        };
        if (full)
        {
            options = options with { Schedule = LearningRateSchedule.Cosine, WarmupSteps = 2, WeightDecay = 0.01 };
        }

        using var plain = TinyModels.RandomModel(seed: 2);
        TrainingResult Train(TrainingDataset d, LoraTrainingOptions o, IProgress<TrainingProgress>? p) => full
            ? new CausalLMTrainer().Train(plain, TrainableSelection.All, d, o, p)
            : new LoraTrainer().Train(f.Model, f.Lora, d, o, p);

        var result = Train(data, options, progress);
        result.Steps.Should().HaveCount(23);
        live.Should().HaveCount(23);
        output.WriteLine($"live handles after each step: {string.Join(" ", live)}");
        long[] growth = live.Skip(2).Select(n => n - live[2]).ToArray();
        growth.Should().OnlyContain(d => d == 0, "a step must not leave tensor handles behind (growth per step after warm-up: {0})", string.Join(" ", growth));

        // A whole run (optimizer state, pending step values) leaves nothing behind either, once the model's lazily made
        // tables exist (made by the run above).
        var small = Data(4);
        long beforeRun = Live;
        Train(small, options with { LogEverySteps = 10 }, null);
        output.WriteLine($"live handles before a second run {beforeRun}, after it {Live}");
        Live.Should().Be(beforeRun);
    }
}
