using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Tests.Training;
using Mistral.Peft.Training;

namespace Mistral.Peft.Tests.Reliability;

/// <summary>
/// Issue 11 §1 "No resume": checkpoints used to hold only the adapter. Now each holds the full training state, and a run
/// interrupted after a checkpoint and resumed from it gives exactly the losses and weights of the uninterrupted run.
/// </summary>
public sealed class ResumeTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // 12 blocks, batch 2 × accumulation 2: 3 steps per epoch, 6 in all; a checkpoint every 2 steps (the first mid-epoch).
    private static LoraTrainingOptions Options(string folder) =>
        TrainingFixture.SixStepOptions() with { CheckpointFolder = folder, SaveEverySteps = 2 };

    [Theory]
    [InlineData(3)] // killed after step 3: resumes mid-epoch 1 from checkpoint-2
    [InlineData(5)] // killed after step 5: resumes mid-epoch 2 from checkpoint-4
    public void AnInterruptedRunResumedFromTheLatestCheckpointMatchesTheUninterruptedRunExactly(int interruptAfter)
    {
        var data = TrainingFixture.RandomBlocks(12);
        TrainingResult full;
        List<float[]> fullWeights;
        using (var f = new TrainingFixture())
        {
            full = new LoraTrainer().Train(f.Model, f.Lora, data, Options(Path.Combine(_dir, "full")));
            fullWeights = f.Weights();
        }

        full.Steps.Should().HaveCount(6);
        string folder = Path.Combine(_dir, "interrupted");
        using (var f = new TrainingFixture())
        using (var cts = new CancellationTokenSource())
        {
            var progress = new ListProgress(p =>
            {
                if (p.Step == interruptAfter)
                {
                    cts.Cancel();
                }
            });
            FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, data, Options(folder), progress, cts.Token))
                .Should().Throw<TrainingCanceledException>();
        }

        int resumedFrom = interruptAfter / 2 * 2;
        string checkpoint = Path.Combine(folder, $"checkpoint-{resumedFrom}");
        Directory.GetFiles(checkpoint).Select(Path.GetFileName).Should().BeEquivalentTo(
            [PeftAdapter.ConfigFileName, PeftAdapter.WeightsFileName, "optimizer.safetensors", "trainer_state.json"]);
        File.ReadAllText(Path.Combine(checkpoint, "trainer_state.json")).Should().Contain($"\"global_step\": {resumedFrom}");

        using var resumedFixture = new TrainingFixture();
        var resumed = new LoraTrainer().Train(resumedFixture.Model, resumedFixture.Lora, data, Options(folder) with { ResumeFrom = TrainingOptions.Latest });

        resumed.Steps.Select(s => s.Step).Should().Equal(1, 2, 3, 4, 5, 6);
        resumed.Steps.Select(s => s.Loss).Should().Equal(full.Steps.Select(s => s.Loss), "every loss is bit-identical");
        resumed.Steps.Select(s => s.GradNorm).Should().Equal(full.Steps.Select(s => s.GradNorm));
        resumed.Steps.Select(s => s.LearningRate).Should().Equal(full.Steps.Select(s => s.LearningRate));
        resumed.EpochLosses.Should().Equal(full.EpochLosses);
        resumed.Tokens.Should().Be(full.Tokens);
        TrainingFixture.MaxAbsDiff(resumedFixture.Weights(), fullWeights).Should().Be(0);
        resumed.Checkpoints.Select(Path.GetFileName).Should().Equal(
            Enumerable.Range(1, 3).Select(i => i * 2).Where(s => s > resumedFrom).Select(s => $"checkpoint-{s}"));
    }

    [Fact]
    public void ResumingWithOtherOptionsIsRefusedNamingTheField()
    {
        var data = TrainingFixture.RandomBlocks(12);
        string folder = Path.Combine(_dir, "run");
        using (var f = new TrainingFixture())
        {
            new LoraTrainer().Train(f.Model, f.Lora, data, Options(folder) with { Epochs = 1 });
        }

        using var g = new TrainingFixture();
        FluentActions.Invoking(() => new LoraTrainer().Train(g.Model, g.Lora, data,
                Options(folder) with { Epochs = 1, ResumeFrom = Path.Combine(folder, "checkpoint-2"), PerDeviceBatchSize = 3 }))
            .Should().Throw<ArgumentException>().WithMessage("*checkpoint-2*trainer_state.json*'train_batch_size' is 2 but this run has PerDeviceBatchSize 3*");
        FluentActions.Invoking(() => new LoraTrainer().Train(g.Model, g.Lora, data, Options(Path.Combine(_dir, "empty")) with { ResumeFrom = TrainingOptions.Latest }))
            .Should().Throw<ArgumentException>().WithMessage("*ResumeFrom is \"latest\" but*empty* holds no checkpoint-{step} folder with trainer_state.json*");
    }

    private static float[] AllWeights(MistralForCausalLM model) =>
        [.. model.parameters().SelectMany(p => p.detach().cpu().data<float>().ToArray())];

    [Fact]
    public void AFullParameterRunResumesExactlyToo()
    {
        // CausalLMTrainer: the checkpoint's model.safetensors is loaded back into the model, with both AdamW groups' moments.
        var data = TrainingFixture.RandomBlocks(6);
        TrainingOptions Opts(string folder) => new()
        {
            PerDeviceBatchSize = 1, GradientAccumulationSteps = 2, LearningRate = 1e-2, WeightDecay = 0.1, ReportEverySteps = 1,
            CheckpointFolder = folder, SaveEverySteps = 1,
        };
        TrainingResult full;
        float[] fullHead;
        using (var model = TinyModels.RandomModel(seed: 1))
        {
            full = new CausalLMTrainer().Train(model, TrainableSelection.All, data, Opts(Path.Combine(_dir, "full")));
            fullHead = AllWeights(model);
        }

        string folder = Path.Combine(_dir, "interrupted");
        using (var model = TinyModels.RandomModel(seed: 1))
        using (var cts = new CancellationTokenSource())
        {
            var progress = new ListProgress(p =>
            {
                if (p.Step == 2)
                {
                    cts.Cancel();
                }
            });
            FluentActions.Invoking(() => new CausalLMTrainer().Train(model, TrainableSelection.All, data, Opts(folder), progress, cts.Token))
                .Should().Throw<TrainingCanceledException>();
        }

        Directory.GetDirectories(folder).Select(Path.GetFileName).Should().Equal("checkpoint-1");
        using var fresh = TinyModels.RandomModel(seed: 1);
        var resumed = new CausalLMTrainer().Train(fresh, TrainableSelection.All, data, Opts(folder) with { ResumeFrom = Path.Combine(folder, "checkpoint-1") });
        resumed.Steps.Select(s => s.Loss).Should().Equal(full.Steps.Select(s => s.Loss));
        AllWeights(fresh).Should().Equal(fullHead, "every weight is bit-identical");
    }

    [Fact]
    public void AMalformedTrainerStateIsRejectedNamingTheFile()
    {
        string checkpoint = Path.Combine(_dir, "run", "checkpoint-2");
        Directory.CreateDirectory(checkpoint);
        File.WriteAllText(Path.Combine(checkpoint, "trainer_state.json"), "{\"log_history\": [], \"adam_steps\": [], \"global_step\": \"two\"}");
        using var f = new TrainingFixture();
        FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, TrainingFixture.RandomBlocks(12), Options(Path.Combine(_dir, "run")) with { ResumeFrom = checkpoint }))
            .Should().Throw<InvalidDataException>().WithMessage($"*{Path.Combine(checkpoint, "trainer_state.json")}*not a valid trainer state*");
    }

    [Fact]
    public void LatestRecoversACheckpointWhoseSaveWasKilledMidSwap()
    {
        // Killed between "previous aside" and "new into place" while writing checkpoint-4: only its hidden complete copy exists.
        var data = TrainingFixture.RandomBlocks(12);
        string folder = Path.Combine(_dir, "run");
        TrainingResult full;
        using (var f = new TrainingFixture())
        {
            full = new LoraTrainer().Train(f.Model, f.Lora, data, Options(folder));
        }

        Directory.Move(Path.Combine(folder, "checkpoint-4"), Path.Combine(folder, $".checkpoint-4.{Guid.NewGuid():N}.new"));
        Directory.Delete(Path.Combine(folder, "checkpoint-6"), recursive: true);

        using var g = new TrainingFixture();
        var resumed = new LoraTrainer().Train(g.Model, g.Lora, data, Options(folder) with { ResumeFrom = TrainingOptions.Latest });
        resumed.Checkpoints.Select(Path.GetFileName).Should().Equal(["checkpoint-6"], "the run resumed from the recovered checkpoint-4");
        resumed.Steps.Select(s => s.Loss).Should().Equal(full.Steps.Select(s => s.Loss));
        Directory.GetFileSystemEntries(folder).Select(Path.GetFileName).Order().Should().Equal("checkpoint-2", "checkpoint-4", "checkpoint-6");
    }
}

/// <summary>Runs alone: it seeds TorchSharp's default generator, which other tests' dropout draws from.</summary>
[CollectionDefinition("default generator", DisableParallelization = true)]
public sealed class DefaultGeneratorCollection;

/// <summary>Resume restores the default CPU generator saved with the checkpoint, so runs with dropout resume exactly too.</summary>
[Collection("default generator")]
public sealed class ResumeWithDropoutTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (Core.Modeling.MistralForCausalLM Model, Mistral.Peft.Lora.LoraModel Lora) Fresh()
    {
        var model = TinyModels.RandomModel(seed: 1);
        var lora = Mistral.Peft.Lora.LoraInjector.Inject(model, new Mistral.Peft.Lora.LoraOptions { R = 4, Alpha = 8, Dropout = 0.3, Seed = 11, TargetModules = ["q_proj", "v_proj"] });
        return (model, lora);
    }

    private static LoraTrainingOptions Options(string folder) => new()
    {
        Epochs = 2, PerDeviceBatchSize = 2, GradientAccumulationSteps = 2, LearningRate = 3e-2, Seed = 9,
        ReportEverySteps = 1, CheckpointFolder = folder, SaveEverySteps = 2,
    };

    [Fact]
    public void ADropoutRunResumedFromACheckpointMatchesTheUninterruptedRunExactly()
    {
        var data = TrainingFixture.RandomBlocks(12);
        TorchSharp.torch.manual_seed(123);
        var (fullModel, fullLora) = Fresh();
        TrainingResult full;
        using (fullModel)
        {
            full = new LoraTrainer().Train(fullModel, fullLora, data, Options(Path.Combine(_dir, "full")));
        }

        string folder = Path.Combine(_dir, "interrupted");
        TorchSharp.torch.manual_seed(123);
        var (model, lora) = Fresh();
        using (model)
        using (var cts = new CancellationTokenSource())
        {
            var progress = new ListProgress(p =>
            {
                if (p.Step == 3)
                {
                    cts.Cancel();
                }
            });
            FluentActions.Invoking(() => new LoraTrainer().Train(model, lora, data, Options(folder), progress, cts.Token))
                .Should().Throw<TrainingCanceledException>();
        }

        TorchSharp.torch.manual_seed(999); // whatever the generator holds now, resuming restores the checkpoint's state
        var (resumedModel, resumedLora) = Fresh();
        using (resumedModel)
        {
            var resumed = new LoraTrainer().Train(resumedModel, resumedLora, data, Options(folder) with { ResumeFrom = TrainingOptions.Latest });
            resumed.Steps.Select(s => s.Loss).Should().Equal(full.Steps.Select(s => s.Loss), "dropout masks continue exactly after resume");
            resumed.Steps.Select(s => s.GradNorm).Should().Equal(full.Steps.Select(s => s.GradNorm));
        }
    }
}
