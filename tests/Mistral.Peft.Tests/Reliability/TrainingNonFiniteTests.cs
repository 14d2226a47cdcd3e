using Mistral.Core.Checkpoints;
using Mistral.Peft.Adapters;
using Mistral.Peft.Tests.Training;
using Mistral.Peft.Training;

namespace Mistral.Peft.Tests.Reliability;

/// <summary>
/// Issue 11 §2: a diverging run (learning rate 1e10) used to go on with NaN and save NaN checkpoints. Now a non-finite
/// loss or gradient norm stops the run naming the step (or the step is skipped on request), and no checkpoint with
/// non-finite weights is written.
/// </summary>
public sealed class TrainingNonFiniteTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private LoraTrainingOptions Diverging => new()
    {
        Epochs = 2,
        PerDeviceBatchSize = 2,
        GradientAccumulationSteps = 1,
        LearningRate = 1e10,
        MaxGradNorm = null,
        Shuffle = false,
        CheckpointFolder = Path.Combine(_dir, "run"),
        SaveEverySteps = 1,
    };

    private static bool AllFinite(IEnumerable<float[]> weights) => weights.All(w => w.All(float.IsFinite));

    private static void CheckpointsAreFinite(string folder)
    {
        foreach (string checkpoint in Directory.GetDirectories(folder))
        {
            using var file = SafeTensorsFile.Open(Path.Combine(checkpoint, PeftAdapter.WeightsFileName));
            foreach (string key in file.Tensors.Keys)
            {
                using var t = file.Load(key);
                t.isfinite().all().item<bool>().Should().BeTrue($"{checkpoint}: {key} must be finite");
            }
        }
    }

    [Fact]
    public void ADivergingRunStopsNamingTheStepKeepsFiniteWeightsAndWritesNoNonFiniteCheckpoint()
    {
        using var f = new TrainingFixture();
        var data = TrainingFixture.RandomBlocks(8);
        var e = FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, data, Diverging))
            .Should().Throw<TrainingDivergedException>().Which;
        e.Step.Should().BeGreaterThan(1, "the first update is finite; the huge weights it leaves overflow the next forward");
        e.Message.Should().Contain($"step {e.Step} ").And.Contain("NaN").And.Contain("learning rate (1E+10)").And.Contain("NonFiniteStep = Skip");
        e.WeightsFinite.Should().BeTrue();
        AllFinite(f.Weights()).Should().BeTrue("the diverged step was not applied");
        e.PartialResult.Steps.Select(s => s.Step).Should().Equal(Enumerable.Range(1, e.Step - 1));
        e.PartialResult.Steps.Should().OnlyContain(s => double.IsFinite(s.Loss) && double.IsFinite(s.GradNorm));
        e.PartialResult.Checkpoints.Should().HaveCount(e.Step - 1);
        Directory.GetDirectories(Diverging.CheckpointFolder!).Should().HaveCount(e.Step - 1);
        CheckpointsAreFinite(Diverging.CheckpointFolder!);
        f.Model.training.Should().BeFalse("the model's mode is restored");
    }

    [Fact]
    public void SkipDropsTheNonFiniteStepsAndCountsThem()
    {
        using var f = new TrainingFixture();
        var data = TrainingFixture.RandomBlocks(8);
        var result = new LoraTrainer().Train(f.Model, f.Lora, data, Diverging with { Epochs = 1, NonFiniteStep = NonFiniteStepPolicy.Skip });
        result.SkippedSteps.Should().BeGreaterThan(0);
        (result.Steps.Count + result.SkippedSteps).Should().Be(4);
        result.Steps.Should().OnlyContain(s => double.IsFinite(s.Loss) && double.IsFinite(s.GradNorm));
        result.EpochLosses.Should().OnlyContain(l => double.IsFinite(l));
        AllFinite(f.Weights()).Should().BeTrue();
        CheckpointsAreFinite(Diverging.CheckpointFolder!);
    }

    [Fact]
    public void SkipStopsWhenAWholeEpochIsNonFinite()
    {
        using var f = new TrainingFixture();
        var data = TrainingFixture.RandomBlocks(8);
        var e = FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, data, Diverging with { NonFiniteStep = NonFiniteStepPolicy.Skip }))
            .Should().Throw<TrainingDivergedException>().Which;
        e.Message.Should().Contain("Every step of epoch 2");
        e.PartialResult.EpochLosses.Should().HaveCount(1).And.OnlyContain(l => double.IsFinite(l));
        AllFinite(f.Weights()).Should().BeTrue();
    }

    [Fact]
    public void AnUndefinedPolicyIsRejectedNamingTheOption()
    {
        FluentActions.Invoking(() => new LoraTrainingOptions { NonFiniteStep = (NonFiniteStepPolicy)7 }.Validate())
            .Should().Throw<ArgumentException>().WithMessage("LoraTrainingOptions.NonFiniteStep must be Stop or Skip; got 7.*");
    }

    [Fact]
    public void ACheckpointIsNotWrittenWhenATrainedWeightIsNonFiniteEvenWithFiniteLosses()
    {
        // A NaN in an embedding row that no token uses (ids are in [3, 97)) leaves every loss and gradient norm finite, but
        // the trained weights are not: the checkpoint due after step 1 is refused.
        using var model = TinyModels.RandomModel(seed: 1);
        using (TorchSharp.torch.no_grad())
        {
            model.get_parameter("model.embed_tokens.weight")![0, 0] = float.NaN;
        }

        string folder = Path.Combine(_dir, "run");
        var options = new TrainingOptions { PerDeviceBatchSize = 2, GradientAccumulationSteps = 1, LearningRate = 1e-3, CheckpointFolder = folder, SaveEverySteps = 1 };
        var e = FluentActions.Invoking(() => new CausalLMTrainer().Train(model, TrainableSelection.Matching("model.embed_tokens.weight"), TrainingFixture.RandomBlocks(4), options))
            .Should().Throw<TrainingDivergedException>().Which;
        e.Step.Should().Be(1);
        e.Message.Should().Contain("NaN or infinite values at step 1").And.Contain("checkpoint-1").And.Contain("not written");
        e.PartialResult.Steps.Should().ContainSingle().Which.Loss.Should().Match(l => double.IsFinite(l));
        Directory.GetFileSystemEntries(folder).Should().BeEmpty("neither a checkpoint nor a staging folder is left");
    }
}
