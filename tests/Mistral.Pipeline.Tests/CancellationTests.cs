using Mistral.Peft.Adapters;

namespace Mistral.Pipeline.Tests;

/// <summary>Cancelling mid-training leaves a loadable checkpoint and a report that says so.</summary>
public sealed class CancellationTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Fact]
    public void CancelledTrainingSavesALoadableCheckpointAndSaysSo()
    {
        var train = PipelineFixture.Examples(90, seed: 1);
        string output = TestPaths.TempDir();
        using var cts = new CancellationTokenSource();
        var seen = new List<PipelineProgress>();
        var progress = new InlineProgress(p =>
        {
            seen.Add(p);
            if (p.Stage == PipelineStage.Training && p.Done == 3)
            {
                cts.Cancel();
            }
        });

        // Progress is read from the device every step here (ReportEverySteps 1), so the cancellation lands right after step 3.
        using TrainedPipeline tuned = EndToEndTests.Configured(fixture).WithTrainingOptions(o => o with { ReportEverySteps = 1 })
            .WithOutputFolder(output).Train(train, progress, cts.Token);

        tuned.Cancelled.Should().BeTrue();
        tuned.Training.StepsCompleted.Should().Be(3);
        tuned.Training.Steps.Select(st => st.Step).Should().Equal(1, 2, 3);
        tuned.Training.Tokens.Should().Be(tuned.Training.Steps.Sum(st => st.Tokens));
        tuned.Training.TotalSteps.Should().BeGreaterThan(3);
        tuned.Training.Checkpoints.Should().ContainSingle().Which.Should().Be(Path.Combine(output, "checkpoint-3"));
        seen.Select(p => p.Stage).Should().Contain([PipelineStage.Loading, PipelineStage.Preparing, PipelineStage.Training]);
        PeftAdapter.ReadConfig(Path.Combine(output, "checkpoint-3")).R.Should().Be(16);

        var report = tuned.Evaluate(PipelineFixture.Examples(3, seed: 5));
        report.ToMarkdown().Should().Contain("3/").And.Contain("**cancelled**");
        report.ToJsonObject()["training"]!["cancelled"]!.GetValue<bool>().Should().BeTrue();

        using var reloaded = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu")
            .WithAdapter(Path.Combine(output, "checkpoint-3"), quantizeBase: true).ForClassification().Build();
        var a = reloaded.Lora!.NamedAdapterParameters();
        var b = tuned.Lora!.NamedAdapterParameters();
        a.Select(kv => kv.Key).Should().Equal(b.Select(kv => kv.Key));
        for (int i = 0; i < a.Count; i++)
        {
            TensorChecks.Exactly(a[i].Value, b[i].Value).Should().BeTrue(a[i].Key);
        }
    }

    [Fact]
    public void CancellationWhileLoadingThrows()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var act = () => EndToEndTests.Configured(fixture).Train(PipelineFixture.Examples(6, seed: 1), null, cts.Token);
        act.Should().Throw<OperationCanceledException>();
    }
}

/// <summary>The trainer's cancellation tells how far it got, even between progress reads.</summary>
public sealed class TrainerCancellationTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Fact]
    public void CancellationBetweenReadsCountsEveryAppliedStep()
    {
        using var cts = new CancellationTokenSource();
        var progress = new InlineProgress(p =>
        {
            if (p.Stage == PipelineStage.Training && p.Done == 2)
            {
                cts.Cancel(); // reported at the read after step 5 (LogEverySteps 5): steps 3–5 were applied already
            }
        });
        using TrainedPipeline tuned = EndToEndTests.Configured(fixture).Train(PipelineFixture.Examples(90, seed: 1), progress, cts.Token);
        tuned.Cancelled.Should().BeTrue();
        tuned.Training.StepsCompleted.Should().Be(5);
        tuned.Training.Steps.Select(s => s.Step).Should().Equal(1, 2, 3, 4, 5);
        tuned.Training.Checkpoints.Should().BeEmpty("no output folder was set");
    }
}

/// <summary>An <see cref="IProgress{T}"/> that runs its handler on the reporting thread (so a test can cancel at an exact step).</summary>
internal sealed class InlineProgress(Action<PipelineProgress> handler) : IProgress<PipelineProgress>
{
    public void Report(PipelineProgress value) => handler(value);
}
