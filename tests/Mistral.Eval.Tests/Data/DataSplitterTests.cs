using System.Text.Json;
using Mistral.Eval.Data;

namespace Mistral.Eval.Tests.Data;

/// <summary>Compares DataSplitter and NumpyRandomState with scikit-learn 1.2.1 / NumPy 1.24.2 output
/// (tools/eval_data/stratify_reference.py → tests/fixtures/eval-data/stratify_reference.json).</summary>
public class DataSplitterTests
{
    private static readonly JsonElement Reference =
        JsonDocument.Parse(File.ReadAllText(EvalDataFixtures.PathOf("stratify_reference.json"))).RootElement;

    public static TheoryData<string, double> StratifiedRuns()
    {
        var data = new TheoryData<string, double>();
        foreach (var c in Reference.GetProperty("stratified").EnumerateArray())
        {
            foreach (var r in c.GetProperty("runs").EnumerateArray())
            {
                data.Add(c.GetProperty("name").GetString()!, r.GetProperty("fraction").GetDouble());
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(StratifiedRuns))]
    public void StratifiedSubsample_matches_sklearn_train_test_split(string caseName, double fraction)
    {
        var c = Reference.GetProperty("stratified").EnumerateArray().Single(x => x.GetProperty("name").GetString() == caseName);
        var labels = c.GetProperty("labels").EnumerateArray().Select(x => x.GetString()!).ToArray();
        var run = c.GetProperty("runs").EnumerateArray().Single(x => x.GetProperty("fraction").GetDouble() == fraction);
        var rows = Enumerable.Range(0, labels.Length).ToArray();

        if (run.TryGetProperty("error", out _))
        {
            // scikit-learn refused (a side smaller than the class count): so do we, naming the argument.
            var act = () => DataSplitter.StratifiedSubsample(rows, i => labels[i], fraction);
            act.Should().Throw<ArgumentException>().Which.ParamName.Should().Be("trainFraction");
            return;
        }

        var split = DataSplitter.StratifiedSubsample(rows, i => labels[i], fraction, seed: 42);

        split.Train.Should().HaveCount(run.GetProperty("train_count").GetInt32());
        split.Test.Should().HaveCount(run.GetProperty("test_count").GetInt32());
        var expectedCounts = run.GetProperty("per_class_train").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
        var actualCounts = split.Train.GroupBy(i => labels[i]).ToDictionary(g => g.Key, g => g.Count());
        actualCounts.Should().Equal(expectedCounts);

        if (run.TryGetProperty("train_indices", out var trainIdx))
        {
            // Same rows in the same order as scikit-learn, not just the same counts.
            split.TrainIndices.Should().Equal(trainIdx.EnumerateArray().Select(x => x.GetInt32()));
            split.TestIndices.Should().Equal(run.GetProperty("test_indices").EnumerateArray().Select(x => x.GetInt32()));
        }
        else
        {
            // Large case: the fixture keeps the first 100 rows of each side; train and test partition the rows.
            split.TrainIndices.Take(100).Should().Equal(run.GetProperty("train_head").EnumerateArray().Select(x => x.GetInt32()));
            split.TestIndices.Take(100).Should().Equal(run.GetProperty("test_head").EnumerateArray().Select(x => x.GetInt32()));
            split.TrainIndices.Concat(split.TestIndices).Order().Should().Equal(rows);
        }
    }

    [Fact]
    public void RandomTrainValidationSplit_matches_sklearn()
    {
        foreach (var p in Reference.GetProperty("plain").EnumerateArray())
        {
            int n = p.GetProperty("n").GetInt32();
            var split = DataSplitter.RandomTrainValidationSplit(Enumerable.Range(0, n).ToArray(),
                p.GetProperty("test_size").GetDouble(), (uint)p.GetProperty("seed").GetInt64());
            split.TrainIndices.Should().Equal(p.GetProperty("train_indices").EnumerateArray().Select(x => x.GetInt32()));
            split.TestIndices.Should().Equal(p.GetProperty("test_indices").EnumerateArray().Select(x => x.GetInt32()));
        }
    }

    [Fact]
    public void NumpyRandomState_matches_numpy_seeding_permutation_and_choice()
    {
        foreach (var r in Reference.GetProperty("random_state").EnumerateArray())
        {
            uint seed = (uint)r.GetProperty("seed").GetInt64();
            new NumpyRandomState(seed).StateHead(4).Should().Equal(r.GetProperty("state_head").EnumerateArray().Select(x => (uint)x.GetInt64()));
            new NumpyRandomState(seed).Permutation(37).Should().Equal(r.GetProperty("permutation_37").EnumerateArray().Select(x => x.GetInt32()));
            new NumpyRandomState(seed).Choice(50, 7).Should().Equal(r.GetProperty("choice_50_7").EnumerateArray().Select(x => x.GetInt32()));
        }
    }

    [Fact]
    public void ApproximateMode_matches_sklearn_docstring_examples()
    {
        // From scikit-learn's _approximate_mode docstring (rng=0 and rng=42 on the tie case).
        DataSplitter.ApproximateMode([4, 2], 3, new NumpyRandomState(0)).Should().Equal(2, 1);
        DataSplitter.ApproximateMode([2, 2, 2, 1], 2, new NumpyRandomState(0)).Should().Equal(0, 1, 1, 0);
        DataSplitter.ApproximateMode([2, 2, 2, 1], 2, new NumpyRandomState(42)).Should().Equal(1, 1, 0, 0);
    }

    [Fact]
    public void Classes_sort_by_code_point_like_numpy()
    {
        // U+1F600 sorts after U+FFFD by code point, before it in UTF-16 ordinal order.
        string[] labels = ["\uFFFD", "\U0001F600", "a"];
        labels.Order(CodePointComparer.Instance).Should().Equal("a", "\uFFFD", "\U0001F600");
        string.CompareOrdinal("\U0001F600", "\uFFFD").Should().BeNegative();
    }

    [Fact]
    public void Rejects_singleton_class_and_bad_fraction_naming_them()
    {
        string[] labels = ["a", "a", "b", "b", "c"];
        var act = () => DataSplitter.StratifiedSubsample(labels, l => l, 0.5);
        act.Should().Throw<ArgumentException>().WithMessage("*'c'*only 1 row*");
        var bad = () => DataSplitter.StratifiedSubsample(labels, l => l, 1.0);
        bad.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("trainFraction");
    }
}
