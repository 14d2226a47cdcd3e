using Mistral.Peft.Training;

namespace Mistral.Peft.Tests.Training;

public class LoraTrainingOptionsTests
{
    [Fact]
    public void DefaultsAreTheStudysAndHuggingFacesAdamWDefaults()
    {
        var o = new LoraTrainingOptions();
        o.PerDeviceBatchSize.Should().Be(4);
        o.GradientAccumulationSteps.Should().Be(2);
        o.LearningRate.Should().Be(2e-4);
        o.Schedule.Should().Be(LearningRateSchedule.Constant);
        o.MaxGradNorm.Should().Be(0.3);
        o.GradientCheckpointing.Should().BeTrue();
        (o.AdamBeta1, o.AdamBeta2, o.AdamEpsilon, o.WeightDecay).Should().Be((0.9, 0.999, 1e-8, 0.0));
        o.Seed.Should().Be(42);
        (o.LogEverySteps, o.ReportEverySteps).Should().Be((10, (int?)null), "step values are read from the device at log steps by default");
        LoraTrainingOptions.Study.Epochs.Should().Be(5);
        LoraTrainingOptions.Study.WarmupRatio.Should().Be(0.03);
        LoraTrainingOptions.StudySummarization.Epochs.Should().Be(1);
        LoraTrainingOptions.Study.Validate().Should().BeSameAs(LoraTrainingOptions.Study);
    }

    [Theory]
    [InlineData(0, 4, 2, "Epochs")]
    [InlineData(1, 0, 2, "PerDeviceBatchSize")]
    [InlineData(1, 4, 0, "GradientAccumulationSteps")]
    public void CountsMustBePositive(int epochs, int batch, int accumulation, string name)
    {
        var o = new LoraTrainingOptions { Epochs = epochs, PerDeviceBatchSize = batch, GradientAccumulationSteps = accumulation };
        FluentActions.Invoking(() => o.Validate()).Should().Throw<ArgumentException>()
            .WithMessage($"LoraTrainingOptions.{name} must be at least 1; got 0.*").Which.ParamName.Should().Be(name);
    }

    [Fact]
    public void EveryOtherOptionIsCheckedByName()
    {
        var cases = new (LoraTrainingOptions Options, string Name)[]
        {
            (new() { LearningRate = 0 }, "LearningRate"),
            (new() { LearningRate = double.NaN }, "LearningRate"),
            (new() { WarmupRatio = 1.5 }, "WarmupRatio"),
            (new() { MaxGradNorm = 0 }, "MaxGradNorm"),
            (new() { MaxGradNorm = double.PositiveInfinity }, "MaxGradNorm"),
            (new() { AdamBeta1 = 1 }, "AdamBeta1"),
            (new() { AdamBeta2 = -0.1 }, "AdamBeta2"),
            (new() { AdamEpsilon = 0 }, "AdamEpsilon"),
            (new() { WeightDecay = -1 }, "WeightDecay"),
            (new() { LogEverySteps = 0 }, "LogEverySteps"),
            (new() { ReportEverySteps = 0 }, "ReportEverySteps"),
            (new() { ReportEverySteps = -3 }, "ReportEverySteps"),
            (new() { CheckpointFolder = " " }, "CheckpointFolder"),
            (new() { Schedule = (LearningRateSchedule)7 }, "Schedule"),
            (new() { WarmupSteps = -1 }, "WarmupSteps"),
            (new() { SaveEverySteps = 0, CheckpointFolder = "out" }, "SaveEverySteps"),
            (new() { SaveEverySteps = 10 }, "SaveEverySteps"),
        };
        foreach (var (options, name) in cases)
        {
            FluentActions.Invoking(() => options.Validate()).Should().Throw<ArgumentException>()
                .WithMessage($"LoraTrainingOptions.{name} *").Which.ParamName.Should().Be(name);
        }

        new LoraTrainingOptions { MaxGradNorm = null }.Validate().MaxGradNorm.Should().BeNull();
        new LoraTrainingOptions { ReportEverySteps = 1 }.Validate().ReportEverySteps.Should().Be(1);
        FluentActions.Invoking(() => new LoraTrainingOptions { ReportEverySteps = 0 }.Validate()).Should().Throw<ArgumentException>()
            .WithMessage("LoraTrainingOptions.ReportEverySteps must be null (read at log steps) or at least 1; got 0.*");
    }

    [Fact]
    public void TheSharedOptionsHaveTheSameDefaultsAndNameTheirOwnType()
    {
        var shared = new TrainingOptions();
        var lora = new LoraTrainingOptions();
        shared.Should().BeEquivalentTo(lora, o => o.Excluding(x => x.BaseModelNameOrPath).ExcludingMissingMembers());
        (shared.Schedule, shared.WarmupRatio, shared.WarmupSteps, shared.SaveEverySteps, shared.CheckpointFolder)
            .Should().Be((LearningRateSchedule.Constant, 0.0, 0, (int?)null, (string?)null));
        FluentActions.Invoking(() => new TrainingOptions { LearningRate = -1 }.Validate()).Should().Throw<ArgumentException>()
            .WithMessage("TrainingOptions.LearningRate must be a positive finite number; got -1.*");
        TrainingOptions asShared = LoraTrainingOptions.Study;
        FluentActions.Invoking(() => (asShared with { Epochs = 0 }).Validate()).Should().Throw<ArgumentException>()
            .WithMessage("LoraTrainingOptions.Epochs *", "a LoRA options record keeps its type (and name) through the shared base");
        new TrainingOptions { SaveEverySteps = 3, CheckpointFolder = "out" }.Validate().SaveEverySteps.Should().Be(3);
    }

    [Theory]
    [InlineData(8, 4, 2, 1)]
    [InlineData(9, 4, 2, 2)] // micro-batches 4+4+1: the third alone is a trailing partial accumulation, stepped
    [InlineData(5, 2, 2, 2)]
    [InlineData(1, 4, 2, 1)]
    public void StepsPerEpochCountsATrailingPartialAccumulation(int blocks, int batch, int accumulation, int expected) =>
        new LoraTrainingOptions { PerDeviceBatchSize = batch, GradientAccumulationSteps = accumulation }.StepsPerEpoch(blocks).Should().Be(expected);
}
