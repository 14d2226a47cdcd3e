using System.Globalization;
using System.Text.Json.Nodes;
using Mistral.Eval.Data;
using Mistral.Pipeline.Experiments;
using Mistral.Samples.Study;
using Xunit.Abstractions;

namespace Mistral.Pipeline.Tests;

/// <summary>The study's command line, in process, on the tiny checkpoint and small JSONL/CSV files.</summary>
public sealed class StudyCliTests(PipelineFixture fixture, ITestOutputHelper output) : IClassFixture<PipelineFixture>
{
    private static readonly string[] Quick = ["--device", "cpu", "--price-per-hour", "2", "--seq-len", "64", "--batch-size", "4", "--grad-accum", "1", "--lr", "0.01", "--seed", "7"];

    [Fact]
    public async Task ClassifyThenInferWriteTheirFilesAndATableThatParses()
    {
        string dir = TestPaths.TempDir();
        var (train, test) = ClassificationFiles(dir);
        string results = Path.Combine(dir, "classify");
        await Run(["classify", "--model", fixture.Folder, "--train", train, "--test", test, "--out", results, "--epochs", "8", "--r", "8", "--alpha", "32", "--dropout", "0", "--targets", "all", .. Quick]);

        var rows = Csv(Path.Combine(results, "table.csv"));
        rows.Should().HaveCount(1);
        rows[0]["method"].Should().Be("fine-tuned");
        rows[0]["samples"].Should().Be("60");
        double.Parse(rows[0]["accuracy"], CultureInfo.InvariantCulture).Should().BeInRange(0, 1);
        decimal.Parse(rows[0]["training_cost"], CultureInfo.InvariantCulture).Should().BeGreaterThan(0, "--price-per-hour 2 prices the training time");
        rows[0].Values.Should().OnlyContain(v => v.Length > 0, "every column is filled");
        File.ReadAllText(Path.Combine(results, "table.md")).Should().Contain("| method | training samples | accuracy | macro F1 |");
        JsonNode.Parse(File.ReadAllText(Path.Combine(results, "table.json")))!["rows"]!.AsArray().Should().HaveCount(1);
        string run = Directory.GetDirectories(Path.Combine(results, "runs")).Should().ContainSingle().Subject;
        var lora = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "config.json")))!["resolved"]!["lora"]!;
        lora["r"]!.GetValue<int>().Should().Be(8);
        lora["alpha"]!.GetValue<double>().Should().Be(32);
        lora["target_modules"]!.AsArray().Should().HaveCount(7);
        foreach (string png in new[] { SweepPlots.AccuracyFile, SweepPlots.LossFile, SweepPlots.ConfusionFile })
        {
            PngCheck.AssertNonTrivial(Path.Combine(results, "plots", png));
        }

        string inferred = Path.Combine(dir, "infer");
        await Run(["infer", "--model", fixture.Folder, "--adapter", Path.Combine(run, "adapter"), "--test", test, "--out", inferred, "--device", "cpu"]);
        File.ReadAllLines(Path.Combine(inferred, "predictions.jsonl")).Should().HaveCount(9);
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(inferred, "report.json")))!;
        report["mode"]!.GetValue<string>().Should().Be("fine-tuned");
        // The adapter evaluated again gives the run's own predictions.
        var before = File.ReadAllLines(Path.Combine(run, "predictions.jsonl")).Select(l => JsonNode.Parse(l)!["generated"]?.GetValue<string>());
        File.ReadAllLines(Path.Combine(inferred, "predictions.jsonl")).Select(l => JsonNode.Parse(l)!["generated"]?.GetValue<string>()).Should().Equal(before);
    }

    [Fact]
    public async Task SummarizeBaselineShardedSweepAndReport()
    {
        string dir = TestPaths.TempDir();
        var (train, test) = SummarizationFiles(dir);
        string summarize = Path.Combine(dir, "summarize");
        await Run(["summarize", "--model", fixture.Folder, "--train", train, "--test", test, "--out", summarize, "--epochs", "2", "--r", "4", "--max-test", "3", .. Quick]);
        var summary = Csv(Path.Combine(summarize, "table.csv")).Should().ContainSingle().Subject;
        summary.Keys.Should().Contain(["rouge1", "rouge2", "rougeL", "rougeLsum"]);
        double.Parse(summary["rouge1"], CultureInfo.InvariantCulture).Should().BeInRange(0, 100);

        string baseline = Path.Combine(dir, "baseline");
        await Run(["baseline", "--task", "summarization", "--model", fixture.Folder, "--train", train, "--test", test, "--out", baseline, "--shots", "1", "--max-test", "3", "--device", "cpu"]);
        Csv(Path.Combine(baseline, "table.csv")).Select(r => r["method"]).Should().Equal("zero-shot", "few-shot (k=1, FirstK)");
        PngCheck.AssertNonTrivial(Path.Combine(baseline, "plots", SweepPlots.RougeFile));
        File.Exists(Path.Combine(baseline, "plots", SweepPlots.LossFile)).Should().BeFalse("zero- and few-shot runs do not train");

        string sweep = Path.Combine(dir, "sweep");
        string[] axes = ["sweep", "--task", "summarization", "--name", "tiny-lora", "--model", fixture.Folder, "--train", train, "--test", test, "--out", sweep,
            "--epochs", "1,2", "--r", "2", "--dropouts", "0.1", "--max-test", "2", .. Quick];
        await Run([.. axes, "--shard", "1/2"]);
        Csv(Path.Combine(sweep, "table.csv")).Should().ContainSingle("shard 1/2 ran one of the two runs, and the table reads what has finished");
        await Run([.. axes, "--shard", "0/2"]);
        File.Delete(Path.Combine(sweep, "table.csv"));
        await Run(["report", "--out", sweep, "--price-per-hour", "1"]);
        var rows = Csv(Path.Combine(sweep, "table.csv"));
        rows.Select(r => r["epochs"]).Should().Equal("1", "2");
        rows.Should().OnlyContain(r => r.Values.All(v => v.Length > 0));
        PngCheck.AssertNonTrivial(Path.Combine(sweep, "plots", SweepPlots.RougeFile));
        PngCheck.AssertNonTrivial(Path.Combine(sweep, "plots", SweepPlots.LossFile));

        // report over a folder of sweep folders
        await Run(["report", "--out", dir]);
    }

    [Fact]
    public async Task MissingInputsAndBadOptionsFailWithAMessageNamingThem()
    {
        var (code, _, err) = await Invoke(["classify"]);
        code.Should().Be(2);
        err.Should().Contain("--model: 'kit/model' does not exist").And.Contain("embedded kit");

        (code, _, err) = await Invoke(["classify", "--model", fixture.Folder]);
        code.Should().Be(2);
        err.Should().Contain("--train: 'kit/data/classification/train.parquet' does not exist");

        (code, _, err) = await Invoke(["sweep", "--model", fixture.Folder, "--shard", "3/2"]);
        code.Should().Be(2);
        err.Should().Contain("--shard '3/2'");

        (code, _, err) = await Invoke(["classify", "--model", fixture.Folder, "--r", "4,8"]);
        code.Should().Be(2);
        err.Should().Contain("--r: one value here; use the sweep verb");

        (code, _, err) = await Invoke(["sweep", "--preset", "lora", "--task", "classification", "--model", fixture.Folder]);
        code.Should().Be(2);
        err.Should().Contain("--task classification: the lora preset is a summarization sweep");

        (code, _, err) = await Invoke(["sweep", "--preset", "nope"]);
        code.Should().NotBe(0);
        err.Should().Contain("nope");
    }

    private async Task Run(string[] args)
    {
        var (code, stdout, stderr) = await Invoke(args);
        output.WriteLine($"$ study {string.Join(' ', args)}\n{stdout}\n{stderr}");
        code.Should().Be(0, stderr);
    }

    private static async Task<(int Code, string Out, string Err)> Invoke(string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = await StudyCli.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static List<Dictionary<string, string>> Csv(string path)
    {
        var lines = File.ReadAllLines(path);
        var header = lines[0].Split(',');
        return lines.Skip(1).Select(l =>
        {
            var f = SplitCsv(l);
            f.Should().HaveCount(header.Length, $"{path}: every row has every column");
            return header.Zip(f).ToDictionary(p => p.First, p => p.Second);
        }).ToList();
    }

    private static List<string> SplitCsv(string line)
    {
        var fields = new List<string>();
        var sb = new System.Text.StringBuilder();
        bool quoted = false;
        for (int i = 0; i < line.Length; i++)
        {
            char c = line[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < line.Length && line[i + 1] == '"')
                {
                    sb.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                else
                {
                    sb.Append(c);
                }
            }
            else if (c == '"')
            {
                quoted = true;
            }
            else if (c == ',')
            {
                fields.Add(sb.ToString());
                sb.Clear();
            }
            else
            {
                sb.Append(c);
            }
        }

        fields.Add(sb.ToString());
        return fields;
    }

    private static (string Train, string Test) ClassificationFiles(string dir)
    {
        string train = Path.Combine(dir, "train.jsonl"), test = Path.Combine(dir, "test.csv");
        File.WriteAllLines(train, PipelineFixture.Examples(60, seed: 1).Select(e => new JsonObject { ["text"] = e.Input, ["label"] = e.Target }.ToJsonString()));
        File.WriteAllLines(test, ["text,label", .. PipelineFixture.Examples(9, seed: 2).Select(e => $"\"{e.Input}\",{e.Target}")]);
        return (train, test);
    }

    private static (string Train, string Test) SummarizationFiles(string dir)
    {
        static IEnumerable<Example> Dialogues(int count, int seed) => PipelineFixture.Examples(count, seed).Select(e =>
            new Example($"Anna: {e.Input}\nBen: great, tell me more", $"Anna tells Ben about {e.Target}"));
        string train = Path.Combine(dir, "sum-train.jsonl"), test = Path.Combine(dir, "sum-test.csv");
        File.WriteAllLines(train, Dialogues(24, 1).Select(e => new JsonObject { ["dialogue"] = e.Input, ["summary"] = e.Target }.ToJsonString()));
        File.WriteAllLines(test, ["dialogue,summary", .. Dialogues(4, 2).Select(e => $"\"{e.Input}\",{e.Target}")]);
        return (train, test);
    }
}
