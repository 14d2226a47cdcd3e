using Mistral.Eval.Data;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Xunit.Abstractions;

namespace Mistral.Pipeline.Tests;

/// <summary>The issue's proof on CPU: QLoRA fine-tuning through the pipeline beats zero-shot prompting on a small labelled task.</summary>
public sealed class EndToEndTests(PipelineFixture fixture, ITestOutputHelper output) : IClassFixture<PipelineFixture>
{
    internal static MistralPipeline Configured(PipelineFixture fixture) => MistralPipeline.Create()
        .FromPretrained(fixture.Folder)
        .OnDevice("cpu")
        .WithQLoRA(r: 16, alpha: 32, dropout: 0.0, targetModules: LoraOptions.AllProjections)
        .ForClassification(labelColumn: "label")
        .WithSeed(7)
        .WithPacking(new SftPackingOptions { SequenceLength = 64 })
        .WithTrainingOptions(o => o with { Epochs = 12, LearningRate = 1e-2, PerDeviceBatchSize = 4, GradientAccumulationSteps = 1, LogEverySteps = 5 });

    [Fact]
    public void FineTunedBeatsZeroShotAndTheSavedAdapterReproducesIt()
    {
        var train = PipelineFixture.Examples(90, seed: 1);
        var test = PipelineFixture.Examples(24, seed: 2);

        using TrainedPipeline tuned = Configured(fixture).Train(train);
        EvaluationReport zero = tuned.Evaluate(test, EvaluationMode.ZeroShot());
        EvaluationReport fine = tuned.Evaluate(test);
        output.WriteLine(zero.ToMarkdown());
        output.WriteLine(fine.ToMarkdown());
        string table = ComparisonTable.ToMarkdown(zero, fine);
        output.WriteLine(table);
        var rows = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        rows.Should().HaveCount(4);
        rows[0].Should().StartWith("| method | examples | accuracy | macro_f1 |");
        rows[2].Should().StartWith("| zero-shot | 24 | 0.0000 |").And.Contain("| — |", "zero-shot has no training time");
        rows[3].Should().StartWith($"| fine-tuned | 24 | {((ClassificationTaskMetrics)fine.Metrics).Generated!.Accuracy.ToString("0.0000", System.Globalization.CultureInfo.InvariantCulture)} |");

        tuned.Cancelled.Should().BeFalse();
        tuned.Training.StepsCompleted.Should().Be(tuned.Training.TotalSteps).And.BeGreaterThan(10);
        tuned.Training.EpochLosses[^1].Should().BeLessThan(tuned.Training.EpochLosses[0] * 0.8, "the loss must fall");
        fine.Mode.Kind.Should().Be(EvaluationModeKind.FineTuned);
        var z = (ClassificationTaskMetrics)zero.Metrics;
        var f = (ClassificationTaskMetrics)fine.Metrics;
        f.Generated!.Accuracy.Should().BeGreaterThanOrEqualTo(z.Generated!.Accuracy + 0.5, "fine-tuning must beat zero-shot by at least 50 points");
        f.Generated.Accuracy.Should().BeGreaterThanOrEqualTo(0.8);
        f.Likelihood!.Accuracy.Should().BeGreaterThanOrEqualTo(0.8);
        f.Unparseable.Should().BeLessThan(test.Count / 5);
        fine.Pillars.TrainingTime.Should().Be(tuned.Training.Elapsed);
        zero.Pillars.TrainingTime.Should().BeNull("zero-shot runs the base model: the training run is not its cost");
        zero.Training.Should().BeNull();
        fine.Pillars.LatencyP95Milliseconds.Should().BeGreaterThanOrEqualTo(fine.Pillars.LatencyP50Milliseconds).And.BeGreaterThan(0);

        // The adapter it saves loads in a fresh pipeline and gives the same predictions.
        string adapter = TestPaths.TempDir();
        tuned.SaveAdapter(adapter);
        using LoadedPipeline again = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu")
            .WithAdapter(adapter, quantizeBase: true).ForClassification().WithSeed(7).Build();
        EvaluationReport replay = again.Evaluate(test, EvaluationMode.FineTuned());
        replay.Predictions.Select(p => p.Generated).Should().Equal(fine.Predictions.Select(p => p.Generated));
        replay.Predictions.Select(p => p.LikelihoodPrediction).Should().Equal(fine.Predictions.Select(p => p.LikelihoodPrediction));
        for (int i = 0; i < test.Count; i++)
        {
            replay.Predictions[i].LabelLogProbabilities!.Zip(fine.Predictions[i].LabelLogProbabilities!)
                .Should().OnlyContain(pair => Math.Abs(pair.First - pair.Second) < 1e-4);
        }
    }
}

/// <summary>Completion-only training through the pipeline: prompt tokens carry no loss.</summary>
public sealed class CompletionOnlyPipelineTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Fact]
    public void CompletionOnlyTrainingLearnsTheLabels()
    {
        var train = PipelineFixture.Examples(90, seed: 1);
        var test = PipelineFixture.Examples(24, seed: 2);
        using TrainedPipeline tuned = EndToEndTests.Configured(fixture)
            .WithCompletionOnlyTraining(new SftCompletionOptions { MaxLength = 64 })
            .Train(train);
        tuned.Training.Data.Should().Contain("90");
        tuned.Training.Steps.Should().OnlyContain(s => s.TargetTokens > 0 && s.TargetTokens < s.Tokens);
        var report = tuned.Evaluate(test);
        ((ClassificationTaskMetrics)report.Metrics).Likelihood!.Accuracy.Should().BeGreaterThanOrEqualTo(0.8);
    }
}
