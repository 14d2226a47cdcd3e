using Mistral.Peft.Adapters;
using Mistral.Peft.Tests.Training;
using Mistral.Peft.Training;

namespace Mistral.Peft.Tests.Reliability;

/// <summary>
/// Issue 11 §1: a <c>CheckpointFolder</c> that is a file used to fail only after the first epoch (losing the result), and
/// a rerun into the same folder silently overwrote <c>checkpoint-N</c>. Both are now refused before the first step.
/// </summary>
public sealed class CheckpointFolderTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private LoraTrainingOptions Options(string folder) => new()
    {
        Epochs = 2,
        PerDeviceBatchSize = 2,
        GradientAccumulationSteps = 1,
        LearningRate = 1e-2,
        CheckpointFolder = folder,
    };

    [Fact]
    public void ACheckpointFolderThatIsAFileFailsBeforeTheFirstStepNamingIt()
    {
        string file = Path.Combine(_dir, "out");
        File.WriteAllText(file, "not a folder");
        using var f = new TrainingFixture();
        var before = f.Weights();
        var progress = new ListProgress();
        FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, TrainingFixture.RandomBlocks(4), Options(file), progress))
            .Should().Throw<ArgumentException>().WithMessage($"LoraTrainingOptions.CheckpointFolder '{file}' is a file*no step was taken*");
        progress.Reports.Should().BeEmpty();
        TrainingFixture.MaxAbsDiff(f.Weights(), before).Should().Be(0);
    }

    [Fact]
    public void ARerunNeverOverwritesACheckpointUnlessAsked()
    {
        string folder = Path.Combine(_dir, "out");
        var data = TrainingFixture.RandomBlocks(4);
        using (var first = new TrainingFixture())
        {
            new LoraTrainer().Train(first.Model, first.Lora, data, Options(folder)).Checkpoints.Select(Path.GetFileName)
                .Should().Equal("checkpoint-2", "checkpoint-4");
        }

        byte[] saved = File.ReadAllBytes(Path.Combine(folder, "checkpoint-2", PeftAdapter.WeightsFileName));
        using var second = new TrainingFixture(seed: 3);
        var before = second.Weights();
        FluentActions.Invoking(() => new LoraTrainer().Train(second.Model, second.Lora, data, Options(folder) with { LearningRate = 5e-2 }))
            .Should().Throw<ArgumentException>().WithMessage("*already holds checkpoint-2, checkpoint-4*OverwriteCheckpoints = true*no step was taken*");
        TrainingFixture.MaxAbsDiff(second.Weights(), before).Should().Be(0);
        File.ReadAllBytes(Path.Combine(folder, "checkpoint-2", PeftAdapter.WeightsFileName)).Should().Equal(saved);

        new LoraTrainer().Train(second.Model, second.Lora, data, Options(folder) with { LearningRate = 5e-2, OverwriteCheckpoints = true });
        File.ReadAllBytes(Path.Combine(folder, "checkpoint-2", PeftAdapter.WeightsFileName)).Should().NotEqual(saved);
    }
}

/// <summary>Run sizes that overflow a step counter are refused before anything runs.</summary>
public sealed class RunSizeTests
{
    [Fact]
    public void EpochsThatOverflowTheStepCountAreRefusedNamingTheOption()
    {
        using var model = TinyModels.RandomModel();
        var lora = Mistral.Peft.Lora.LoraInjector.Inject(model, new Mistral.Peft.Lora.LoraOptions { R = 2, TargetModules = ["q_proj"] });
        var data = new Mistral.Peft.Training.PackedDataset(Enumerable.Range(0, 40).Select(i => (IReadOnlyList<int>)Enumerable.Range(3, 8).ToArray()), 8);
        var options = new Mistral.Peft.Training.LoraTrainingOptions { Epochs = int.MaxValue, PerDeviceBatchSize = 1, GradientAccumulationSteps = 1 };
        var act = () => new Mistral.Peft.Training.LoraTrainer().Train(model, lora, data, options);
        act.Should().Throw<ArgumentException>().WithMessage("LoraTrainingOptions.Epochs 2147483647 × 40 steps per epoch is *");
    }
}
