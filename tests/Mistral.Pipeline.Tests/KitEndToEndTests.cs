using Mistral.Eval.Data;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Xunit.Abstractions;

namespace Mistral.Pipeline.Tests;

/// <summary>
/// The study's comparison on real text: the kit's pretrained small Mistral (kit/model) on the kit's 20-way Debian-section
/// classification (kit/data), zero-shot against QLoRA fine-tuned, through the pipeline on CPU.
/// </summary>
public sealed class KitEndToEndTests(ITestOutputHelper output)
{
    private static async Task<IReadOnlyList<Example>> Read(string file, int perLabel)
    {
        var all = (await new DatasetReader().ReadAsync(TestPaths.RepoPath(file), ColumnMapping.Classification, ReadOptions.StudyCleaning)).Examples;
        var subset = DataSplitter.StratifiedSubsample(all, e => e.Target, (double)(perLabel * 20) / all.Count).Train;
        return subset.Select(e => e.Input.Length <= 300 ? e : e with { Input = e.Input[..300] }).ToArray();
    }

    [Fact]
    public async Task FineTuningTheKitModelBeatsPromptingIt()
    {
        var train = await Read("kit/data/classification/train.parquet", perLabel: 5);
        var test = await Read("kit/data/classification/test.parquet", perLabel: 2);
        train.Select(e => e.Target).Distinct().Should().HaveCount(20);

        using TrainedPipeline tuned = MistralPipeline.Create()
            .FromPretrained(TestPaths.RepoPath("kit", "model"))
            .OnDevice("cpu")
            .WithQLoRA(r: 16, alpha: 32, dropout: 0.0, targetModules: LoraOptions.AllProjections)
            .ForClassification()
            .WithSeed(42)
            .WithCompletionOnlyTraining(new SftCompletionOptions { MaxLength = 256 })
            .WithTrainingOptions(o => o with { Epochs = 3, LearningRate = 2e-3, GradientCheckpointing = false })
            .Train(train);
        var zero = tuned.Evaluate(test, EvaluationMode.ZeroShot());
        var fine = tuned.Evaluate(test);
        output.WriteLine(ComparisonTable.ToMarkdown(zero, fine));

        var z = (ClassificationTaskMetrics)zero.Metrics;
        var f = (ClassificationTaskMetrics)fine.Metrics;
        z.Generated!.Labels.Should().HaveCount(20);
        f.Likelihood!.Accuracy.Should().BeGreaterThanOrEqualTo(z.Likelihood!.Accuracy + 0.15, "fine-tuning must beat zero-shot label likelihood by 15 points");
        f.Generated!.Accuracy.Should().BeGreaterThanOrEqualTo(z.Generated.Accuracy + 0.15, "and the study's generate-and-parse accuracy too");
        tuned.Training.EpochLosses[^1].Should().BeLessThan(tuned.Training.EpochLosses[0]);
    }
}
