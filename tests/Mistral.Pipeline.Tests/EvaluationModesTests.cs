using System.Text.Json;
using Mistral.Core.Generation;
using Mistral.Eval.Data;
using Mistral.Eval.Metrics;
using Mistral.Eval.Prompts;

namespace Mistral.Pipeline.Tests;

/// <summary>Few-shot fitting, summarization, custom tasks, reports and mode handling on the base model.</summary>
public sealed class EvaluationModesTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Fact]
    public void FewShotFitsAsManyExamplesAsTheContextAllowsAndCountsTheRest()
    {
        var pool = PipelineFixture.Examples(30, seed: 4);
        var test = PipelineFixture.Examples(4, seed: 5);
        using var pipeline = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").ForClassification().Build();

        var wide = pipeline.Evaluate(test, EvaluationMode.FewShot(3, pool: pool));
        wide.Prompts.PromptsShortened.Should().Be(0);
        wide.Predictions.Should().OnlyContain(p => p.FewShotExamples == 3);

        // 350 tokens of context: the template (~230 tokens) leaves room for only some of the shots.
        var narrow = pipeline.Evaluate(test, EvaluationMode.FewShot(3, pool: pool), new EvaluationOptions { ContextLength = 300 });
        narrow.Prompts.PromptsShortened.Should().Be(4);
        narrow.Prompts.FewShotExamplesDropped.Should().Be(4 * 3 - narrow.Predictions.Sum(p => p.FewShotExamples));
        narrow.Predictions.Should().OnlyContain(p => p.PromptTokens + 20 <= 300);
        narrow.ToMarkdown().Should().Contain("4 shortened");

        var fail = () => pipeline.Evaluate(test, EvaluationMode.FewShot(3, pool: pool), new EvaluationOptions { ContextLength = 300, PromptOverflow = PromptOverflowPolicy.Fail });
        fail.Should().Throw<PromptTooLongException>().WithMessage("examples[0]: Prompt 'classification.few_shot'*");
    }

    [Fact]
    public void FewShotPromptIsTheStudyTemplateWithTheFirstExamplePerLabel()
    {
        var pool = PipelineFixture.Examples(9, seed: 4);
        var task = new ClassificationTask();
        var context = task.CreateContext(pool, pool);
        var request = task.Prompt(new Example("a guitar song", "music"), EvaluationMode.FewShot(20), context);
        var fitted = new PromptFitter(new CountChars(), new PromptBudget(100000, 20)).Fit(request, PromptFitPolicy.Fail).Prompt;
        string shots = string.Concat(pool.Take(3).Select(e => $"Sentence: {e.Input} \n Class: {e.Target} \n\n"));
        fitted.Should().Be(StudyPrompts.ClassificationFewShot.Render(
            ("sentence", "a guitar song"), ("newsgroup_classes", "sport, food, music"), ("few_shot_samples", shots)));
    }

    [Fact]
    public void SummarizationScoresRougeOfTheGeneratedText()
    {
        var test = Enumerable.Range(0, 4).Select(i => new Example($"Ann: the band plays at {i}. Bob: great, see you", $"Ann and Bob meet at {i}")).ToArray();
        using var pipeline = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").ForSummarization().WithSeed(1).Build();
        var report = pipeline.Evaluate(test, EvaluationMode.ZeroShot());
        var metrics = report.Metrics.Should().BeOfType<SummarizationTaskMetrics>().Subject;
        var scorer = new RougeScorer(new RougeOptions { UseStemmer = true });
        double expected = report.Predictions.Average(p => scorer.Score(p.Target, p.Prediction!)["rouge1"].FMeasure) * 100;
        metrics.Rouge["rouge1"].Mean.FMeasure.Should().BeApproximately(expected, 1e-9);
        report.Predictions.Should().OnlyContain(p => p.GeneratedTokens > 0 && p.GeneratedTokens <= 50, "zero-shot uses the study's 50-token baseline preset");
        report.Predictions.Should().OnlyContain(p => p.LikelihoodPrediction == null);
    }

    [Fact]
    public void ACustomTaskPlugsIn()
    {
        var test = PipelineFixture.Examples(5, seed: 6);
        using var pipeline = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").ForTask(new EchoTask()).Build();
        var report = pipeline.Evaluate(test, EvaluationMode.ZeroShot());
        report.Task.Should().Be("echo");
        report.Metrics.Headline["length"].Should().Be(report.Predictions.Average(p => p.Prediction!.Length));
        report.Predictions.Should().OnlyContain(p => p.GeneratedTokens <= 3);
    }

    [Fact]
    public void ReportsRenderAndPredictionsAreWrittenAsJsonl()
    {
        var test = PipelineFixture.Examples(5, seed: 7);
        using var pipeline = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").ForClassification()
            .WithEvaluationOptions(new EvaluationOptions { BatchSize = 2, Cost = new CostModel(1.212m) }).Build();
        pipeline.Model.train();
        var report = pipeline.Evaluate(test, EvaluationMode.ZeroShot());
        pipeline.Model.training.Should().BeTrue("evaluation restores the caller's mode");

        report.Pillars.InferenceCostPer1000!.Value.Should().BeApproximately(1.212m * (decimal)(report.Pillars.InferenceTime.TotalHours / 5 * 1000), 1e-9m);
        report.Pillars.TrainingTime.Should().BeNull();
        report.ToMarkdown().Should().Contain("| inference cost per 1,000 examples |").And.Contain("USD").And.Contain("none: the base model, adapter off");
        string folder = TestPaths.TempDir();
        report.Save(folder);
        var lines = File.ReadAllLines(Path.Combine(folder, "predictions.jsonl"));
        lines.Should().HaveCount(5);
        var first = JsonDocument.Parse(lines[0]).RootElement;
        first.GetProperty("target").GetString().Should().Be(test[0].Target);
        first.GetProperty("likelihood_prediction").GetString().Should().BeOneOf(PipelineFixture.Labels);
        first.GetProperty("label_log_probabilities").GetArrayLength().Should().Be(3);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "report.json"))).RootElement;
        json.GetProperty("metrics").GetProperty("likelihood").GetProperty("accuracy").GetDouble()
            .Should().Be(((ClassificationTaskMetrics)report.Metrics).Likelihood!.Accuracy);
        Directory.GetFiles(folder).Select(Path.GetFileName).Should().BeEquivalentTo(["report.md", "report.json", "predictions.jsonl"]);
    }

    private sealed class CountChars : ITokenCounter
    {
        public int CountTokens(string text) => text.Length;
    }

    private sealed class EchoTask() : PipelineTask("echo", new ColumnMapping("text", "label"))
    {
        private static readonly PromptTemplate Template = new("echo", "Repeat: {text}\n");

        public override SftExample TrainingExample(Example example) => new($"Repeat: {example.Input}\n", example.Target);

        public override PromptRequest Prompt(Example example, EvaluationMode mode, TaskContext context) =>
            new(Template, new Dictionary<string, string> { ["text"] = example.Input }) { InputPlaceholder = "text" };

        public override GenerationOptions Generation(EvaluationMode mode) => GenerationOptions.Greedy with { MaxNewTokens = 3 };

        public override PredictionParse Parse(string generated, EvaluationMode mode, TaskContext context) => new(generated.ToUpperInvariant(), true);

        public override TaskMetrics Score(IReadOnlyList<ExamplePrediction> predictions, TaskContext context) =>
            new CustomTaskMetrics(new Dictionary<string, double> { ["length"] = predictions.Average(p => p.Prediction!.Length) });
    }
}

/// <summary>The task's whole label set reaches the metrics (scikit-learn's labels=).</summary>
public sealed class ClassificationScoringTests
{
    [Fact]
    public void AClassMissingFromTheTestSampleKeepsItsRowAndCountsInTheMacroAverage()
    {
        var task = new ClassificationTask();
        var context = new TaskContext(["sport", "food", "music"], []);
        ExamplePrediction P(string target, string prediction, bool parsed, string likely) =>
            new(0, "x", target, 3, 0, 0, prediction, prediction, parsed, 1, null, 1.0) { LikelihoodPrediction = likely };
        var predictions = new[]
        {
            P("sport", "sport", true, "sport"),
            P("sport", "gibberish", false, "food"),
            P("food", "food", true, "food"),
        };
        var metrics = (ClassificationTaskMetrics)task.Score(predictions, context);

        metrics.Generated!.Labels.Should().Equal("sport", "food", "music");
        metrics.Generated.PerLabel[2].Support.Should().Be(0);
        metrics.Generated.Accuracy.Should().BeApproximately(2.0 / 3, 1e-12);
        metrics.Unparseable.Should().Be(1);
        // sport: P 1, R 0.5, F1 2/3; food: P 1, R 1, F1 1; music: 0 (zero division) -> macro F1 (2/3 + 1 + 0) / 3.
        metrics.Generated.Macro.F1.Should().BeApproximately(((2.0 / 3) + 1 + 0) / 3, 1e-12);
        // likelihood: sport P 1 R 0.5 F1 2/3; food P 0.5 R 1 F1 2/3; music 0.
        metrics.Likelihood!.Macro.F1.Should().BeApproximately(((2.0 / 3) + (2.0 / 3)) / 3, 1e-12);
        metrics.Headline["unparseable"].Should().Be(1);
    }
}
