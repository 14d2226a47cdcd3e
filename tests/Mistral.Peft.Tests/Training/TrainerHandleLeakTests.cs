using Mistral.Peft.Training;
using TorchSharp;

namespace Mistral.Peft.Tests.Training;

/// <summary>
/// A training step leaves no tensor handle behind: TorchSharp's per-thread live count (created − disposed on this thread,
/// see <c>QuantizedModel/TensorHandleLeakTests</c>) is read in the progress callback, which runs on the training thread.
/// </summary>
public class TrainerHandleLeakTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static long Live => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    [Theory]
    [InlineData(true, 0.3, false)]
    [InlineData(false, null, false)]
    [InlineData(true, 0.3, true)]
    public void TheLiveTensorCountStaysFlatOverTwentySteps(bool checkpointing, double? maxGradNorm, bool completion)
    {
        // 23 steps of batch 1 × accumulation 2; the count after step 3 (warm-up: optimizer state, cached tables) must equal
        // the count after every later step. LogEverySteps 1 reads the losses and reports progress after every step.
        TrainingDataset Data(int count) => completion
            ? new SftCompletionBuilder().Build(Enumerable.Range(0, count).Select(i => new TokenizedCompletion(new[] { 5, 6, 7, 8 }[..(1 + (i % 4))], new[] { 9, 10 }[..(1 + (i % 2))])))
            : TrainingFixture.RandomBlocks(count);
        var data = Data(46);
        using var f = new TrainingFixture();
        var live = new List<long>();
        var progress = new ListProgress(_ => live.Add(Live));
        var options = new LoraTrainingOptions
        {
            PerDeviceBatchSize = 1, GradientAccumulationSteps = 2, Shuffle = false, LogEverySteps = 1,
            GradientCheckpointing = checkpointing, MaxGradNorm = maxGradNorm,
        };
        var result = new LoraTrainer().Train(f.Model, f.Lora, data, options, progress);
        result.Steps.Should().HaveCount(23);
        live.Should().HaveCount(23);
        output.WriteLine($"live handles after each step: {string.Join(" ", live)}");
        long[] growth = live.Skip(2).Select(n => n - live[2]).ToArray();
        growth.Should().OnlyContain(d => d == 0, "a step must not leave tensor handles behind (growth per step after warm-up: {0})", string.Join(" ", growth));

        // A whole run (optimizer state, pending step values) leaves nothing behind either, once the model's lazily made
        // tables exist (made by the run above).
        var small = Data(4);
        long beforeRun = Live;
        new LoraTrainer().Train(f.Model, f.Lora, small, options with { LogEverySteps = 10 });
        output.WriteLine($"live handles before a second run {beforeRun}, after it {Live}");
        Live.Should().Be(beforeRun);
    }
}
