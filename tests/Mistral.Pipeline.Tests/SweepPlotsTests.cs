using System.Text.Json.Nodes;
using Mistral.Pipeline.Experiments;

namespace Mistral.Pipeline.Tests;

/// <summary>Plots and tables of hand-written results folders: the study's shapes (20 labels, a methods table), no training.</summary>
public sealed class SweepPlotsTests
{
    [Fact]
    public void TwentyLabelConfusionMatrixAndRougeByMethodAreDrawn()
    {
        string folder = TestPaths.TempDir();
        string[] labels = [.. Enumerable.Range(0, 20).Select(i => $"comp.topic.{i:00}")];
        var matrix = new JsonArray([.. Enumerable.Range(0, 20).Select(i => (JsonNode?)new JsonArray([.. Enumerable.Range(0, 20).Select(j => (JsonNode?)(i == j ? 30 + i : (i + j) % 4))]))]);
        string classification = WriteRun(folder, "ft-f0.5", 0, "fine-tuned", "FineTuned", new JsonObject { ["accuracy"] = 0.72, ["macro_f1"] = 0.7 },
            new JsonObject { ["metrics"] = new JsonObject { ["generated"] = new JsonObject { ["confusion_labels"] = new JsonArray([.. labels.Select(l => (JsonNode?)l)]), ["confusion_matrix"] = matrix } } });
        var run = SweepResults.Load(folder).Runs.Should().ContainSingle().Subject;
        run.ReadConfusionMatrix()!.Value.Counts[3][3].Should().Be(33);
        string png = SweepPlots.ConfusionMatrix(run, Path.Combine(folder, "confusion.png"));
        PngCheck.AssertNonTrivial(png, minWidth: 1000, minHeight: 1000);

        string sums = TestPaths.TempDir();
        string[] methods = ["zero-shot", "few-shot (k=2, FirstK)", "fine-tuned"];
        double[][] rouge = [[32.77, 10.64, 24.1, 28.3], [38.87, 16.71, 30.2, 33.0], [51.71, 26.86, 42.5, 47.0]];
        for (int i = 0; i < 3; i++)
        {
            WriteRun(sums, $"m{i}", i, methods[i], i == 0 ? "ZeroShot" : i == 1 ? "FewShot" : "FineTuned",
                new JsonObject { ["rouge1"] = rouge[i][0], ["rouge2"] = rouge[i][1], ["rougeL"] = rouge[i][2], ["rougeLsum"] = rouge[i][3] }, new JsonObject());
        }

        var results = SweepResults.Load(sums);
        results.EffectiveLayout.Should().Be(SweepTableLayout.Methods);
        var table = SweepTable.From(results);
        table.Columns.Select(c => c.Key).Should().StartWith(["method", "samples", "rouge1", "rouge2", "rougeL", "rougeLsum"]);
        table.ToMarkdown().Should().Contain("| fine-tuned | 100 | 51.71 | 26.86 | 42.50 | 47.00 | 60 s |").And.Contain("No price given");
        PngCheck.AssertNonTrivial(SweepPlots.RougeByMethod(results, Path.Combine(sums, "rouge.png")));
        var noAccuracy = () => SweepPlots.AccuracyVsSamples(results, Path.Combine(sums, "acc.png"));
        noAccuracy.Should().Throw<InvalidOperationException>().WithMessage("AccuracyVsSamples: no run in*has an accuracy*");
        File.Exists(Path.Combine(sums, "acc.png")).Should().BeFalse();
    }

    private static string WriteRun(string folder, string name, int index, string mode, string kind, JsonObject quality, JsonObject report)
    {
        string dir = Path.Combine(folder, SweepRunner.RunsFolder, name);
        Directory.CreateDirectory(dir);
        var run = new JsonObject
        {
            ["id"] = new string((char)('a' + index), 64), ["name"] = name, ["index"] = index, ["mode"] = mode, ["mode_kind"] = kind, ["status"] = "completed",
            ["fraction"] = 0.5, ["training_samples"] = kind == "FineTuned" ? 100 : 0, ["test_examples"] = 50, ["quality"] = quality, ["device"] = "cpu",
            ["started_utc"] = "2026-01-01T00:00:00+00:00", ["finished_utc"] = "2026-01-01T00:01:00+00:00",
            ["pillars"] = new JsonObject
            {
                ["training_seconds"] = kind == "FineTuned" ? 60.0 : null, ["inference_seconds"] = 10.0, ["examples_per_second"] = 5.0,
                ["latency_p50_ms"] = 150.0, ["latency_p95_ms"] = 300.0, ["memory_kind"] = "host RSS", ["inference_peak_memory_bytes"] = 1L << 30,
            },
        };
        File.WriteAllText(Path.Combine(dir, "run.json"), run.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "report.json"), report.ToJsonString());
        return dir;
    }
}
