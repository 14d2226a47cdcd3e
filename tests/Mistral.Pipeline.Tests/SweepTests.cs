using System.Text.Json.Nodes;
using Mistral.Eval.Data;
using Mistral.Pipeline.Experiments;
using Xunit.Abstractions;

namespace Mistral.Pipeline.Tests;

/// <summary>The experiments API on CPU: a 2-fraction × 2-rank sweep on the tiny model and task.</summary>
public sealed class SweepTests(PipelineFixture fixture, ITestOutputHelper output) : IClassFixture<PipelineFixture>
{
    internal static readonly SweepDefinition TwoByTwo = new("two-by-two", new SweepAxes { TrainingFractions = [0.5, 0.75], Ranks = [4, 8] });

    internal static SweepData Data() => SweepData.FromExamples(PipelineFixture.Examples(96, seed: 1), PipelineFixture.Examples(9, seed: 2));

    /// <summary>Small and quick: 3 epochs of 64-token blocks, as in <see cref="EndToEndTests.Configured"/> otherwise.</summary>
    internal static MistralPipeline Base(PipelineFixture fixture) => EndToEndTests.Configured(fixture)
        .WithTrainingOptions(o => o with { Epochs = 12, LogEverySteps = 1 })
        .WithEvaluationOptions(new EvaluationOptions { BatchSize = 9 });

    internal static readonly CostModel Price = new(1.212m);

    [Fact]
    public async Task CancelledAfterItsFirstRunTheSweepResumesWithoutRedoingItAndTheTableListsEveryRunOnce()
    {
        string folder = TestPaths.TempDir();
        var data = Data();
        var runner = new SweepRunner();
        using var cts = new CancellationTokenSource();
        var events = new List<SweepProgress>();
        var progress = new Inline<SweepProgress>(p =>
        {
            events.Add(p);
            if (p.Kind == SweepProgressKind.Completed)
            {
                cts.Cancel();
            }
        });

        var first = () => runner.RunAsync(TwoByTwo, Base(fixture), data, folder, new SweepRunOptions { Cost = Price }, progress, cts.Token);
        await first.Should().ThrowAsync<OperationCanceledException>();
        var plan = SweepRunner.Plan(TwoByTwo, Base(fixture), data);
        plan.Should().HaveCount(4);
        events.Where(e => e.Kind == SweepProgressKind.Completed).Should().ContainSingle().Which.Run.Id.Should().Be(plan[0].Id);
        events.Should().Contain(e => e.Kind == SweepProgressKind.Working && e.Pipeline!.Stage == PipelineStage.Training && e.Pipeline.Training!.Loss > 0);
        string runs = Path.Combine(folder, SweepRunner.RunsFolder);
        Directory.GetDirectories(runs).Select(Path.GetFileName).Should().Equal(plan[0].Name); // no staging folder is left behind
        string firstRunJson = Path.Combine(runs, plan[0].Name, "run.json");
        string finishedBefore = JsonNode.Parse(File.ReadAllText(firstRunJson))!["finished_utc"]!.GetValue<string>();
        DateTime writtenBefore = File.GetLastWriteTimeUtc(firstRunJson);
        SweepResults.Load(folder).MissingRuns.Should().HaveCount(3);

        events.Clear();
        var summary = await runner.RunAsync(TwoByTwo, Base(fixture), data, folder, new SweepRunOptions { Cost = Price }, new Inline<SweepProgress>(events.Add));
        summary.Skipped.Select(p => p.Id).Should().Equal(plan[0].Id);
        summary.Executed.Select(p => p.Id).Should().Equal(plan.Skip(1).Select(p => p.Id));
        events.Where(e => e.Kind == SweepProgressKind.Started).Select(e => e.Run.Id).Should().Equal(plan.Skip(1).Select(p => p.Id), "the finished run is not started again");
        JsonNode.Parse(File.ReadAllText(firstRunJson))!["finished_utc"]!.GetValue<string>().Should().Be(finishedBefore);
        File.GetLastWriteTimeUtc(firstRunJson).Should().Be(writtenBefore);

        foreach (var p in plan)
        {
            string dir = Path.Combine(runs, p.Name);
            foreach (string file in new[] { "config.json", "run.json", "report.json", "report.md", "predictions.jsonl", "training_log.csv", "adapter/adapter_config.json", "adapter/adapter_model.safetensors" })
            {
                File.Exists(Path.Combine(dir, file)).Should().BeTrue($"{p.Name} has {file}");
            }

            File.ReadAllLines(Path.Combine(dir, "predictions.jsonl")).Should().HaveCount(9);
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
            config["id"]!.GetValue<string>().Should().Be(p.Id);
            config["resolved"]!["lora"]!["r"]!.GetValue<int>().Should().Be(p.R!.Value);
            var log = File.ReadAllLines(Path.Combine(dir, "training_log.csv"));
            log[0].Should().Be("step,epoch,micro_batches,loss,grad_norm,tokens,target_tokens,seconds");
            log.Skip(1).Select(l => int.Parse(l.Split(',')[0], System.Globalization.CultureInfo.InvariantCulture)).Should().Equal(Enumerable.Range(1, log.Length - 1));
        }

        var results = SweepResults.Load(folder);
        results.MissingRuns.Should().BeEmpty();
        results.Runs.Select(r => r.Id).Should().Equal(plan.Select(p => p.Id), "every run once, in plan order");
        results.Runs.Select(r => r.TrainingSamples).Should().Equal(48, 48, 72, 72);
        results.Runs.Select(r => r.R).Should().Equal(4, 8, 4, 8);
        var table = SweepTable.From(results, Price);
        table.Layout.Should().Be(SweepTableLayout.SampleEfficiency);
        table.Columns.Select(c => c.Key).Should().StartWith(["fraction", "samples", "r", "accuracy", "macro_f1"]);
        table.Columns.Select(c => c.Key).Should().Contain(["likelihood_accuracy", "training_seconds", "training_tokens_per_second", "training_peak_memory_bytes",
            "training_cost", "inference_cost_per_1000", "latency_p50_ms", "latency_p95_ms"]);
        table.Rows.Should().HaveCount(4);
        foreach (var row in table.Rows)
        {
            row.Values.Should().OnlyContain(kv => kv.Value != null, $"every column of {row.RunName} is filled");
        }

        table.Rows.Select(r => (decimal)r.Values["training_cost"]!).Should().OnlyContain(c => c > 0);
        output.WriteLine(table.ToMarkdown());
        var md = table.ToMarkdown().Split('\n');
        md[0].Should().Be("### two-by-two: sample efficiency, 4 runs of 4 planned");
        md[2].Should().StartWith("| training fraction | training samples | r | accuracy | macro F1 |");
        md.Count(l => l.StartsWith("| 50 % | 48 |", StringComparison.Ordinal)).Should().Be(2);
        md.Count(l => l.StartsWith("| 75 % | 72 |", StringComparison.Ordinal)).Should().Be(2);
        var csv = table.ToCsv().TrimEnd('\n').Split('\n');
        csv.Should().HaveCount(5);
        csv.Skip(1).Should().OnlyContain(l => l.Split(',').Length == table.Columns.Count + 2 && !l.Contains(",,"));
        var json = JsonNode.Parse(table.ToJson())!;
        json["rows"]!.AsArray().Select(r => r!["run_id"]!.GetValue<string>()).Should().Equal(plan.Select(p => p.Id));

        var written = table.Save(folder);
        written.Should().OnlyContain(p => File.Exists(p) && new FileInfo(p).Length > 100);

        var plots = SweepPlots.SaveAll(results, Path.Combine(folder, "plots"));
        plots.Select(Path.GetFileName).Should().BeEquivalentTo([SweepPlots.AccuracyFile, SweepPlots.LossFile, SweepPlots.ConfusionFile]);
        foreach (string png in plots)
        {
            PngCheck.AssertNonTrivial(png);
        }

        Directory.GetFiles(Path.Combine(folder, "plots")).Should().HaveCount(3, "no temporary file is left");
    }

    [Fact]
    public async Task ShardZeroAndOneOfTwoTogetherGiveTheTableOfOneUnshardedRun()
    {
        // Lighter than the other test (fewer examples and epochs): here only equality matters, not learning.
        var data = SweepData.FromExamples(PipelineFixture.Examples(48, seed: 1), PipelineFixture.Examples(9, seed: 2));
        var basePipeline = Base(fixture).WithTrainingOptions(o => o with { Epochs = 4 });
        var runner = new SweepRunner();
        string whole = TestPaths.TempDir(), sharded = TestPaths.TempDir();
        await runner.RunAsync(TwoByTwo, basePipeline, data, whole, new SweepRunOptions { Cost = Price });
        var s0 = await runner.RunAsync(TwoByTwo, basePipeline, data, sharded, new SweepRunOptions { Cost = Price, Shard = SweepShard.Parse("0/2") });
        SweepResults.Load(sharded).MissingRuns.Should().HaveCount(2, "aggregation reads whatever has finished");
        var s1 = await runner.RunAsync(TwoByTwo, basePipeline, data, sharded, new SweepRunOptions { Cost = Price, Shard = SweepShard.Parse("1/2") });
        s0.Executed.Select(p => p.Index).Should().Equal(0, 2);
        s1.Executed.Select(p => p.Index).Should().Equal(1, 3);

        var a = SweepTable.From(SweepResults.Load(whole), Price);
        var b = SweepTable.From(SweepResults.Load(sharded), Price);
        b.Columns.Should().Equal(a.Columns);
        b.Rows.Should().HaveCount(4);
        var deterministic = a.Columns.Where(c => c.Kind != SweepColumnKind.Measurement).Select(c => c.Key).ToArray();
        deterministic.Should().Contain(["fraction", "samples", "r", "accuracy", "macro_f1", "likelihood_accuracy"]);
        for (int i = 0; i < 4; i++)
        {
            b.Rows[i].RunId.Should().Be(a.Rows[i].RunId);
            foreach (string key in deterministic)
            {
                b.Rows[i].Values[key].Should().Be(a.Rows[i].Values[key], $"row {i} column {key}");
            }
        }

        Strip(b.ToCsv(), b).Should().Be(Strip(a.ToCsv(), a));
    }

    [Fact]
    public void RunIdsAreStableAndChangeWithTheConfigurationOrTheData()
    {
        var data = Data();
        var plan = SweepRunner.Plan(TwoByTwo, Base(fixture), data);
        SweepRunner.Plan(TwoByTwo, Base(fixture), Data()).Select(p => p.Id).Should().Equal(plan.Select(p => p.Id));
        plan.Select(p => p.Id).Should().OnlyHaveUniqueItems().And.OnlyContain(id => id.Length == 64);
        plan.Select(p => p.Name).Should().OnlyHaveUniqueItems();
        plan[0].Name.Should().StartWith("ft-f0.5-r4-a32-d0-e12-lr0.01-");

        var otherLr = SweepRunner.Plan(TwoByTwo, Base(fixture).WithTrainingOptions(o => o with { LearningRate = 5e-3 }), data);
        otherLr.Select(p => p.Id).Should().NotIntersectWith(plan.Select(p => p.Id));
        var otherData = SweepData.FromExamples(PipelineFixture.Examples(96, seed: 3), PipelineFixture.Examples(9, seed: 2));
        SweepRunner.Plan(TwoByTwo, Base(fixture), otherData).Select(p => p.Id).Should().NotIntersectWith(plan.Select(p => p.Id));
        var named = SweepRunner.Plan(TwoByTwo, Base(fixture), SweepData.FromExamples(data.Train, data.Test, dataId: "keywords-v1"));
        named.Select(p => p.Id).Should().NotIntersectWith(plan.Select(p => p.Id));
        // Logging settings are not part of a run's identity.
        SweepRunner.Plan(TwoByTwo, Base(fixture).WithTrainingOptions(o => o with { LogEverySteps = 7 }), data).Select(p => p.Id).Should().Equal(plan.Select(p => p.Id));

        // The study's presets expand as the study's scripts did.
        StudySweeps.SampleEfficiency.Axes.TrainingFractions.Should().Equal(0.025, 0.05, 0.1, 0.25, 0.5, 0.99);
        StudySweeps.LoraSummarization.Axes.Combinations.Should().Be(72);
        var zeroAndFew = new SweepDefinition("baseline", new SweepAxes { TrainingFractions = [0.5, 0.75], Ranks = [4, 8], Modes = [EvaluationMode.ZeroShot(), EvaluationMode.FewShot(3)] });
        var baseline = SweepRunner.Plan(zeroAndFew, Base(fixture), data);
        baseline.Select(p => p.Mode.Kind).Should().Equal(EvaluationModeKind.ZeroShot, EvaluationModeKind.FewShot, EvaluationModeKind.FewShot);
        baseline.Select(p => p.TrainingSamples).Should().Equal(0, 48, 72);

        // Stratified subsample: the study's rows (DataSplitter), every label kept.
        var expected = DataSplitter.StratifiedSubsample(data.Train, e => e.Target, 0.5, 42).Train.Count;
        plan[0].TrainingSamples.Should().Be(expected);

        // Summarization subsamples at random: scikit-learn's train_test_split(train_size=f, random_state=42) rows.
        var dialogues = PipelineFixture.Examples(20, seed: 4).Select(e => new Example(e.Input, "about " + e.Target)).ToArray();
        var summarization = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").WithQLoRA(r: 4).ForSummarization();
        var half = SweepRunner.Plan(new SweepDefinition("s", new SweepAxes { TrainingFractions = [0.5] }), summarization, SweepData.FromExamples(dialogues, dialogues));
        half.Should().ContainSingle().Which.TrainingSamples.Should().Be(10);
        SweepPlanner.RandomSubsample(dialogues, 0.5, 42).Should().Equal(DataSplitter.RandomTrainValidationSplit(dialogues, 0.5, 42).Train);

        // A folder under a planned run's name is complete only with that run's id: a stale or foreign result is run again.
        string folder = TestPaths.TempDir();
        string runDir = Path.Combine(folder, SweepRunner.RunsFolder, plan[0].Name);
        Directory.CreateDirectory(runDir);
        File.WriteAllText(Path.Combine(runDir, "run.json"), new JsonObject { ["id"] = otherLr[0].Id, ["status"] = "completed" }.ToJsonString());
        SweepRunner.IsComplete(runDir, plan[0].Id).Should().BeFalse();
        SweepRunner.IsComplete(runDir, otherLr[0].Id).Should().BeTrue();

        var shards = Enumerable.Range(0, 3).Select(i => new SweepShard(i, 3)).ToArray();
        Enumerable.Range(0, 10).Should().OnlyContain(i => shards.Count(s => s.Includes(i)) == 1);
        var bad = () => SweepShard.Parse("2/2");
        bad.Should().Throw<FormatException>().WithMessage("*--shard '2/2'*");
        var badAxis = () => new SweepDefinition("x", new SweepAxes { Ranks = [4, 4] });
        badAxis.Should().Throw<ArgumentException>().WithMessage("SweepAxes.Ranks holds 4 twice*");
        var badFraction = () => new SweepDefinition("x", new SweepAxes { TrainingFractions = [0] });
        badFraction.Should().Throw<ArgumentException>().WithMessage("SweepAxes.TrainingFractions[0] = 0 must be in (0, 1]*");
    }

    [Fact]
    public void ANonFiniteLossIsNeverWrittenToTheTrainingLog()
    {
        TrainingSummary Summary(double loss) => new()
        {
            Cancelled = false, StepsCompleted = 2, TotalSteps = 2, Examples = 4, Data = "2 blocks", Elapsed = TimeSpan.FromSeconds(1), Tokens = 128,
            MemoryKind = "host RSS", EpochLosses = [1.0], Checkpoints = [], Options = Mistral.Peft.Training.LoraTrainingOptions.Study,
            Steps = [new(1, 1, 1, 2.5, 0.5, 64, TimeSpan.FromSeconds(0.5)), new(2, 1, 1, loss, 0.25, 64, TimeSpan.FromSeconds(0.5))],
        };

        SweepRunner.TrainingLog(Summary(1.25), "run-a").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Should().Equal("step,epoch,micro_batches,loss,grad_norm,tokens,target_tokens,seconds", "1,1,1,2.5,0.5,64,0,0.5", "2,1,1,1.25,0.25,64,0,0.5");
        var nan = () => SweepRunner.TrainingLog(Summary(double.NaN), "run-a");
        nan.Should().Throw<InvalidDataException>().WithMessage("Sweep run run-a: the loss of step 2 is NaN*");
    }

    private static string Strip(string csv, SweepTable table)
    {
        var keep = table.Columns.Select((c, i) => (c, i)).Where(x => x.c.Kind != SweepColumnKind.Measurement).Select(x => x.i).ToArray();
        return string.Join('\n', csv.TrimEnd('\n').Split('\n').Select(l =>
        {
            var f = l.Split(',');
            return string.Join(',', keep.Select(i => f[i]).Append(f[^1]));
        }));
    }
}

/// <summary>An <see cref="IProgress{T}"/> that runs its handler on the reporting thread.</summary>
internal sealed class Inline<T>(Action<T> handler) : IProgress<T>
{
    public void Report(T value) => handler(value);
}
