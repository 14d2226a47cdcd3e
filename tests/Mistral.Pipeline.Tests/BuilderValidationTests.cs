using Mistral.Eval.Data;

namespace Mistral.Pipeline.Tests;

/// <summary>Invalid or conflicting builder choices fail at Build/Train with a message naming the call.</summary>
public sealed class BuilderValidationTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    private static readonly IReadOnlyList<Example> Few = PipelineFixture.Examples(6, seed: 3);

    [Fact]
    public void TrainWithoutFromPretrainedNamesTheMissingCall()
    {
        var act = () => MistralPipeline.Create().WithQLoRA(r: 4).ForClassification().Train(Few);
        act.Should().Throw<InvalidOperationException>().WithMessage("Train: no model; call FromPretrained(folder) first.");
    }

    [Fact]
    public void TwoAdaptersConflict()
    {
        var act = () => MistralPipeline.Create().FromPretrained(fixture.Folder).WithQLoRA(r: 4).WithLoRA(r: 8).Build();
        act.Should().Throw<InvalidOperationException>().WithMessage("Build: WithLoRA(r: 8) conflicts with WithQLoRA(r: 4)*");
    }

    [Fact]
    public void AdapterFolderConflictsWithANewAdapter()
    {
        var act = () => MistralPipeline.Create().FromPretrained(fixture.Folder).WithQLoRA(r: 4).WithAdapter("somewhere").Build();
        act.Should().Throw<InvalidOperationException>().WithMessage("Build: WithAdapter(\"somewhere\") conflicts with WithQLoRA(r: 4)*");
    }

    [Fact]
    public void TrainWithoutTaskOrAdapterSaysWhatToCall()
    {
        var noTask = () => MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").WithQLoRA(r: 4).Train(Few);
        noTask.Should().Throw<InvalidOperationException>().WithMessage("Train: no task; call ForClassification()*");
        var noAdapter = () => MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").ForClassification().Train(Few);
        noAdapter.Should().Throw<InvalidOperationException>().WithMessage("Train: no adapter to train; call WithQLoRA*");
    }

    [Fact]
    public void MissingFolderAndConfigAreNamed()
    {
        var missing = () => MistralPipeline.Create().FromPretrained("/nonexistent/model").Build();
        missing.Should().Throw<DirectoryNotFoundException>().WithMessage("*FromPretrained(\"/nonexistent/model\"): the folder does not exist.");
        string empty = TestPaths.TempDir();
        var noConfig = () => MistralPipeline.Create().FromPretrained(empty).Build();
        noConfig.Should().Throw<FileNotFoundException>().WithMessage("*no config.json in the folder*");
    }

    [Fact]
    public void CudaWithoutABackendAndBadOptionsFailAtBuild()
    {
        var cuda = () => MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cuda").Build();
        cuda.Should().Throw<InvalidOperationException>().WithMessage("Build: OnDevice(\"cuda\"): CUDA is not available*");
        var dtype = () => MistralPipeline.Create().FromPretrained(fixture.Folder).WithDType(TorchSharp.torch.ScalarType.Int32).Build();
        dtype.Should().Throw<InvalidOperationException>().WithMessage("Build: WithDType(Int32)*");
        var epochs = () => MistralPipeline.Create().FromPretrained(fixture.Folder).WithTrainingOptions(o => o with { Epochs = 0 }).Build();
        epochs.Should().Throw<InvalidOperationException>().WithMessage("Build: LoraTrainingOptions.Epochs must be at least 1; got 0.*");
    }

    [Fact]
    public void EmptyExamplesAreNamedByIndex()
    {
        var bad = Few.ToList();
        bad[3] = new Example("text", "  ");
        var act = () => MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").WithLoRA(r: 2).ForClassification().Train(bad);
        act.Should().Throw<ArgumentException>().WithMessage("trainExamples[3] has an empty target ('label')*");
    }

    [Fact]
    public void FineTunedEvaluationNeedsAnAdapter()
    {
        using var loaded = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").ForClassification().Build();
        var act = () => loaded.Evaluate(Few, EvaluationMode.FineTuned());
        act.Should().Throw<InvalidOperationException>().WithMessage("Evaluate(EvaluationMode.FineTuned()): the pipeline has no adapter*");
        loaded.Lora.Should().BeNull();

        using var fresh = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").WithLoRA(r: 2).ForClassification().Build();
        fresh.HasTrainedAdapter.Should().BeFalse();
        var untrained = () => fresh.Evaluate(Few, EvaluationMode.FineTuned());
        untrained.Should().Throw<InvalidOperationException>().WithMessage("*the pipeline's adapter is untrained*");
        fresh.Evaluate(Few).Mode.Kind.Should().Be(EvaluationModeKind.ZeroShot, "without a trained adapter the default is zero-shot");
        loaded.Model.training.Should().BeFalse("a loaded pipeline's model is in eval mode");
    }
}
