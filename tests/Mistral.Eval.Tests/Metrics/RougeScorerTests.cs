using System.Text.Json;
using Mistral.Eval.Metrics;

namespace Mistral.Eval.Tests.Metrics;

public class RougeScorerTests
{
    private const double Tolerance = 1e-12;

    private static readonly JsonElement Expected = MetricsFixtures.Json(Path.Combine("rouge", "expected.json"));

    private static RougeScorer Scorer(bool stem, params string[] types) =>
        new(new RougeOptions { RougeTypes = types, UseStemmer = stem });

    private static string[] Types(JsonElement c) =>
        c.GetProperty("types").EnumerateArray().Select(t => t.GetString()!).ToArray();

    [Fact]
    public void Matches_the_values_rouge_score_asserts_in_its_unit_tests()
    {
        int checkedValues = 0;
        foreach (JsonElement c in Expected.GetProperty("unit").EnumerateArray())
        {
            string[] types = Types(c);
            var scores = Scorer(c.GetProperty("stem").GetBoolean(), types)
                .Score(c.GetProperty("target").GetString()!, c.GetProperty("prediction").GetString()!);
            scores.Keys.Should().BeEquivalentTo(types);
            foreach (string type in types)
            {
                if (c.TryGetProperty("all_zero", out _))
                {
                    scores[type].Should().Be(RougeScore.Zero);
                    checkedValues++;
                    continue;
                }

                JsonElement e = c.GetProperty(type);
                foreach ((string key, double actual) in new[] { ("p", scores[type].Precision), ("r", scores[type].Recall), ("f", scores[type].FMeasure) })
                {
                    if (e.TryGetProperty(key, out JsonElement value))
                    {
                        actual.Should().BeApproximately(value.GetDouble(), Tolerance, $"{type} {key} of {c}");
                        checkedValues++;
                    }
                }
            }
        }

        checkedValues.Should().Be(21);
    }

    [Fact]
    public void Multiple_references_keep_the_best_F_per_type()
    {
        JsonElement m = Expected.GetProperty("multi_reference");
        string[] targets = m.GetProperty("targets").EnumerateArray().Select(t => t.GetString()!).ToArray();
        var scores = Scorer(false, Types(m)).Score(targets, m.GetProperty("prediction").GetString()!);
        foreach (string type in Types(m))
        {
            scores[type].FMeasure.Should().BeApproximately(m.GetProperty(type).GetProperty("f").GetDouble(), Tolerance);
        }
    }

    [Fact]
    public void Tokenizes_as_rouge_score_does()
    {
        foreach (JsonElement c in Expected.GetProperty("tokenize").EnumerateArray())
        {
            new RougeTokenizer(c.GetProperty("stem").GetBoolean()).Tokenize(c.GetProperty("text").GetString()!)
                .Should().Equal(c.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
        }
    }

    [Fact]
    public void Python_lowercasing_of_dotted_capital_I_and_Kelvin_sign_is_reproduced()
    {
        // Python: "İ".lower() == "i\u0307" (the combining dot separates tokens); "\u212A".lower() == "k".
        new RougeTokenizer(false).Tokenize("İstanbul \u212Aelvin İİ").Should().Equal("i", "stanbul", "kelvin", "i", "i");
    }

    [Fact]
    public void Matches_rouge_score_on_its_test_data_files()
    {
        JsonElement files = Expected.GetProperty("files");
        string[] targets = File.ReadAllText(MetricsFixtures.PathOf("rouge", "target.txt")).Split('\n');
        string[] predictions = File.ReadAllText(MetricsFixtures.PathOf("rouge", "prediction.txt")).Split('\n');
        int checkedValues = 0;
        foreach (JsonElement c in files.GetProperty("target.txt:prediction.txt").EnumerateArray())
        {
            string[] types = c.EnumerateObject().Select(p => p.Name).Where(n => n.StartsWith("rouge", StringComparison.Ordinal)).ToArray();
            int line = c.GetProperty("line").GetInt32();
            var scores = Scorer(c.GetProperty("stem").GetBoolean(), types).Score(targets[line], predictions[line]);
            foreach (string type in types)
            {
                AssertRounded(scores[type], c.GetProperty(type));
                checkedValues++;
            }
        }

        JsonElement multi = files.GetProperty("target_multi.0.txt:prediction_multi.0.txt")[0];
        var lsum = Scorer(true, "rougeLsum").Score(
            File.ReadAllText(MetricsFixtures.PathOf("rouge", "target_multi.0.txt")),
            File.ReadAllText(MetricsFixtures.PathOf("rouge", "prediction_multi.0.txt")));
        AssertRounded(lsum["rougeLsum"], multi.GetProperty("rougeLsum"));
        checkedValues.Should().Be(10);
    }

    private static void AssertRounded(RougeScore score, JsonElement recallPrecisionF)
    {
        // rouge_score's tests check (recall, precision, f) to 5 places.
        Math.Round(score.Recall, 5).Should().BeApproximately(recallPrecisionF[0].GetDouble(), 1e-9);
        Math.Round(score.Precision, 5).Should().BeApproximately(recallPrecisionF[1].GetDouble(), 1e-9);
        Math.Round(score.FMeasure, 5).Should().BeApproximately(recallPrecisionF[2].GetDouble(), 1e-9);
    }

    [Fact]
    public void Matches_the_python_restatement_on_230_generated_cases()
    {
        // tools/eval_metrics/rouge_reference.py --generate: random-ish pairs, multi-line, unicode,
        // punctuation-only, empty strings, several references, with and without stemming.
        JsonElement data = MetricsFixtures.Json("rouge_cases.json");
        string[] types = data.GetProperty("types").EnumerateArray().Select(t => t.GetString()!).ToArray();
        var scorers = new Dictionary<bool, RougeScorer> { [false] = Scorer(false, types), [true] = Scorer(true, types) };
        var tokenizers = new Dictionary<bool, RougeTokenizer> { [false] = new(false), [true] = new(true) };
        int cases = 0;
        int compared = 0;
        double worst = 0;
        foreach (JsonElement c in data.GetProperty("cases").EnumerateArray())
        {
            bool stem = c.GetProperty("stem").GetBoolean();
            string[] targets = c.GetProperty("targets").EnumerateArray().Select(t => t.GetString()!).ToArray();
            string prediction = c.GetProperty("prediction").GetString()!;
            var scores = targets.Length == 1 ? scorers[stem].Score(targets[0], prediction) : scorers[stem].Score(targets, prediction);
            int t = 0;
            foreach (JsonElement tokens in c.GetProperty("target_tokens").EnumerateArray())
            {
                tokenizers[stem].Tokenize(targets[t++]).Should().Equal(tokens.EnumerateArray().Select(x => x.GetString()), $"tokens of {targets[t - 1]}");
            }

            foreach (string type in types)
            {
                JsonElement e = c.GetProperty("expected").GetProperty(type);
                foreach ((double actual, double expected) in new[]
                         {
                             (scores[type].Precision, e.GetProperty("p").GetDouble()),
                             (scores[type].Recall, e.GetProperty("r").GetDouble()),
                             (scores[type].FMeasure, e.GetProperty("f").GetDouble()),
                         })
                {
                    actual.Should().BeApproximately(expected, Tolerance, $"{type} of case {cases}: {targets[0]} | {prediction}");
                    worst = Math.Max(worst, Math.Abs(actual - expected));
                    compared++;
                }
            }

            cases++;
        }

        cases.Should().Be(230);
        compared.Should().Be(230 * 7 * 3);
        worst.Should().Be(0, "the arithmetic is the same rational arithmetic in double");
    }

    [Fact]
    public void ScoreAll_scores_each_pair_and_reports_progress()
    {
        var scorer = Scorer(false, "rouge1");
        var reported = new List<int>();
        var results = scorer.ScoreAll(["a b", "c d"], ["a", "x"], new SynchronousProgress(reported));
        results.Select(r => r["rouge1"].Recall).Should().Equal(0.5, 0.0);
        reported.Should().Equal(2);
    }

    [Fact]
    public void ScoreAll_with_several_references_per_example()
    {
        var scorer = Scorer(false, "rouge1");
        var results = scorer.ScoreAll([["zz", "a b"], ["c"]], ["a", "c"]);
        results.Select(r => r["rouge1"].FMeasure).Should().Equal(2.0 / 3.0, 1.0);
    }

    [Fact]
    public void ScoreAll_honours_cancellation()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var act = () => Scorer(false, "rouge1").ScoreAll(["a"], ["a"], cancellationToken: cts.Token);
        act.Should().Throw<OperationCanceledException>();
    }

    [Theory]
    [InlineData("rouge10")]
    [InlineData("rougeX")]
    [InlineData("rouge0")]
    [InlineData("RougeL")]
    [InlineData("rougeLSum")]
    public void Unknown_rouge_types_are_rejected_naming_the_option(string type)
    {
        var act = () => new RougeScorer(new RougeOptions { RougeTypes = ["rouge1", type] });
        act.Should().Throw<ArgumentException>().WithMessage($"*RougeOptions.RougeTypes*'{type}'*");
    }

    [Fact]
    public void Empty_and_duplicate_rouge_types_are_rejected()
    {
        FluentActions.Invoking(() => new RougeScorer(new RougeOptions { RougeTypes = [] }))
            .Should().Throw<ArgumentException>().WithMessage("*RougeTypes*at least one*");
        FluentActions.Invoking(() => new RougeScorer(new RougeOptions { RougeTypes = ["rouge1", "rouge1"] }))
            .Should().Throw<ArgumentException>().WithMessage("*'rouge1' more than once*");
    }

    [Fact]
    public void Mismatched_lengths_and_missing_targets_are_rejected_naming_the_argument()
    {
        var scorer = Scorer(false, "rouge1");
        FluentActions.Invoking(() => scorer.ScoreAll(["a", "b"], ["a"]))
            .Should().Throw<ArgumentException>().WithParameterName("predictions").WithMessage("*1 items*targets has 2*");
        FluentActions.Invoking(() => scorer.Score(Array.Empty<string>(), "a"))
            .Should().Throw<ArgumentException>().WithParameterName("targets");
        FluentActions.Invoking(() => scorer.ScoreAll([["a"], []], ["a", "b"]))
            .Should().Throw<ArgumentException>().WithMessage("targets[1] must contain at least one target*");
        FluentActions.Invoking(() => scorer.ScoreAll(["a", null!], ["a", "b"]))
            .Should().Throw<ArgumentNullException>().WithMessage("targets[1] is null*");
    }

    [Fact]
    public void Metrics_need_no_TorchSharp()
    {
        typeof(RougeScorer).Assembly.GetReferencedAssemblies().Select(a => a.Name)
            .Should().NotContain(name => name!.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void Percent_scale_multiplies_by_100()
    {
        RougeScore percent = new RougeScore(0.5, 0.25, 1.0 / 3).ToPercent();
        percent.Precision.Should().Be(50);
        percent.Recall.Should().Be(25);
        percent.FMeasure.Should().BeApproximately(100.0 / 3, 1e-12);
    }

    private sealed class SynchronousProgress(List<int> values) : IProgress<int>
    {
        public void Report(int value) => values.Add(value);
    }
}
