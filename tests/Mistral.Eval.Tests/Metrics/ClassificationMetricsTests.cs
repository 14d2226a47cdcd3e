using System.Text.Json;
using Mistral.Eval.Metrics;

namespace Mistral.Eval.Tests.Metrics;

public class ClassificationMetricsTests
{
    private const double Tolerance = 1e-12;

    public static TheoryData<string> CaseNames()
    {
        var names = new TheoryData<string>();
        foreach (JsonElement c in Cases().EnumerateArray())
        {
            names.Add(c.GetProperty("name").GetString()!);
        }

        return names;
    }

    private static JsonElement Cases() => MetricsFixtures.Json("classification_cases.json").GetProperty("cases");

    private static JsonElement Case(string name) =>
        Cases().EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    private static string[] Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToArray();

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Matches_scikit_learn(string name)
    {
        // tools/eval_metrics/sklearn_reference.py (scikit-learn 1.2.1, Debian python3-sklearn). Cases with
        // "labels_given" pass scikit-learn's labels= (in that order) to every function.
        JsonElement c = Case(name);
        string[] yTrue = Strings(c.GetProperty("y_true"));
        string[] yPred = Strings(c.GetProperty("y_pred"));
        string[]? given = c.TryGetProperty("labels_given", out JsonElement g) ? Strings(g) : null;
        name.StartsWith("labels_", StringComparison.Ordinal).Should().Be(given is not null);
        foreach ((ZeroDivision mode, string key) in new[]
                 {
                     (ZeroDivision.Zero, "zero_division_0"), (ZeroDivision.One, "zero_division_1"), (ZeroDivision.NaN, "zero_division_nan"),
                 })
        {
            ClassificationReport report = ClassificationMetrics.Compute(yTrue, yPred, mode, given);
            JsonElement e = c.GetProperty(key);
            report.Labels.Should().Equal(Strings(c.GetProperty("labels")));
            report.Accuracy.Should().BeApproximately(c.GetProperty("accuracy").GetDouble(), Tolerance);
            JsonElement matrix = c.GetProperty("confusion_matrix");
            if (matrix.ValueKind == JsonValueKind.Null)
            {
                // scikit-learn's confusion_matrix refuses a label list with no label of y_true; ours counts nothing.
                c.GetProperty("confusion_matrix_error").GetString().Should().Be("At least one label specified must be in y_true");
                yTrue.Should().NotIntersectWith(given!);
                report.ConfusionMatrix.Should().HaveCount(given!.Length).And.OnlyContain(r => r.Count == given.Length && r.All(x => x == 0));
            }
            else
            {
                report.ConfusionMatrix.Select(r => r.ToArray()).Should().BeEquivalentTo(
                    matrix.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()),
                    o => o.WithStrictOrdering());
            }

            int i = 0;
            foreach (JsonElement row in e.GetProperty("per_label").EnumerateArray())
            {
                LabelMetrics m = report.PerLabel[i++];
                Close(m.Precision, row[0], $"{key} precision of {m.Label}");
                Close(m.Recall, row[1], $"{key} recall of {m.Label}");
                Close(m.F1, row[2], $"{key} F1 of {m.Label}");
                m.Support.Should().Be(row[3].GetInt32());
            }

            i.Should().Be(report.Labels.Count);
            if (given is null)
            {
                report.Micro.Support.Should().Be(yTrue.Length);
            }

            foreach ((AveragedMetrics actual, string average) in new[] { (report.Micro, "micro"), (report.Macro, "macro"), (report.Weighted, "weighted") })
            {
                JsonElement expected = e.GetProperty(average);
                Close(actual.Precision, expected[0], $"{key} {average} precision");
                Close(actual.Recall, expected[1], $"{key} {average} recall");
                Close(actual.F1, expected[2], $"{key} {average} F1");
                actual.Support.Should().Be(report.PerLabel.Sum(m => m.Support));
            }

            if (mode != ZeroDivision.NaN)
            {
                report.ToText().Should().Be(e.GetProperty("report2").GetString());
                report.ToText(4).Should().Be(e.GetProperty("report4").GetString());
            }
        }
    }

    private static void Close(double actual, JsonElement expected, string because)
    {
        double value = MetricsFixtures.Number(expected);
        if (double.IsNaN(value))
        {
            actual.Should().Be(double.NaN, because);
        }
        else
        {
            actual.Should().BeApproximately(value, Tolerance, because);
        }
    }

    [Fact]
    public void Labels_only_predicted_count_in_the_macro_average()
    {
        var report = ClassificationMetrics.Compute(["a", "b", "a", "b"], ["a", "z", "a", "b"]);
        report.Labels.Should().Equal("a", "b", "z");
        report.PerLabel[2].Should().Be(new LabelMetrics("z", 0, 0, 0, 0));
        report.Macro.F1.Should().BeApproximately((1.0 + 2.0 / 3.0 + 0) / 3, Tolerance);
        report.Micro.F1.Should().Be(report.Accuracy);
        report.Accuracy.Should().Be(0.75);
    }

    [Fact]
    public void Fixture_covers_every_labels_rule()
    {
        // The labels= cases of the fixture exercise each rule at least once (so a rule cannot silently go untested).
        var cases = Cases().EnumerateArray().Where(c => c.TryGetProperty("labels_given", out _)).ToList();
        cases.Should().HaveCountGreaterThanOrEqualTo(10);
        bool Any(Func<string[], string[], string[], bool> rule) => cases.Any(c =>
            rule(Strings(c.GetProperty("y_true")), Strings(c.GetProperty("y_pred")), Strings(c.GetProperty("labels_given"))));
        Any((t, p, l) => l.Any(x => !t.Contains(x) && !p.Contains(x))).Should().BeTrue("a listed label occurs nowhere");
        Any((t, p, l) => p.Any(x => !l.Contains(x))).Should().BeTrue("a prediction is not listed");
        Any((t, p, l) => t.Any(x => !l.Contains(x))).Should().BeTrue("a true label is not listed");
        Any((t, p, l) => !l.SequenceEqual(l.Order(StringComparer.Ordinal))).Should().BeTrue("the list is not sorted");
        Any((t, p, l) => !t.Zip(p).Any(x => x.First == x.Second)).Should().BeTrue("nothing is correct (float supports)");
        Any((t, p, l) => l.All(x => !t.Contains(x))).Should().BeTrue("no listed label is true (zero total support)");
        Any((t, p, l) => l.ToHashSet().SetEquals(t.Concat(p))).Should().BeTrue("the list is a permutation of the labels present");
    }

    [Fact]
    public void A_class_missing_from_the_sample_keeps_its_row_and_counts_in_the_macro_average()
    {
        string[] truth = ["a", "b", "a"];
        string[] predicted = ["a", "b", "b"];
        var without = ClassificationMetrics.Compute(truth, predicted);
        without.Labels.Should().Equal("a", "b");
        without.Macro.F1.Should().BeApproximately(2.0 / 3, Tolerance);

        var report = ClassificationMetrics.Compute(truth, predicted, labels: ["c", "b", "a"]);
        report.Labels.Should().Equal("c", "b", "a");
        report.PerLabel[0].Should().Be(new LabelMetrics("c", 0, 0, 0, 0));
        report.PerLabel[1].Should().Be(new LabelMetrics("b", 0.5, 1, 2.0 / 3, 1));
        report.PerLabel[2].Should().Be(new LabelMetrics("a", 1, 0.5, 2.0 / 3, 2));
        report.Macro.F1.Should().BeApproximately((0 + (2.0 / 3) + (2.0 / 3)) / 3, Tolerance);
        report.Macro.Precision.Should().BeApproximately(0.5, Tolerance);
        report.Weighted.F1.Should().BeApproximately(2.0 / 3, Tolerance, "support 0 weighs nothing");
        report.Micro.Should().Be(new AveragedMetrics(2.0 / 3, 2.0 / 3, 2.0 / 3, 3));
        report.MicroIsAccuracy.Should().BeFalse();
        report.ConfusionMatrix.Select(r => r.ToArray()).Should().BeEquivalentTo(
            new[] { new[] { 0, 0, 0 }, new[] { 0, 1, 0 }, new[] { 0, 1, 1 } }, o => o.WithStrictOrdering());
        report.ToText().Should().Contain("   micro avg       0.67      0.67      0.67         3\n").And.NotContain("accuracy");

        // With zero_division=1 the absent label's precision, recall and F1 (2·1·1/2) are 1, as in scikit-learn 1.2.
        var one = ClassificationMetrics.Compute(truth, predicted, ZeroDivision.One, ["c", "b", "a"]);
        one.PerLabel[0].Should().Be(new LabelMetrics("c", 1, 1, 1, 0));
        // With NaN (scikit-learn >= 1.3's 0/0 F1) it is left out of every average.
        var nan = ClassificationMetrics.Compute(truth, predicted, ZeroDivision.NaN, ["c", "b", "a"]);
        nan.PerLabel[0].F1.Should().Be(double.NaN);
        nan.Macro.F1.Should().BeApproximately(2.0 / 3, Tolerance);
    }

    [Fact]
    public void A_prediction_outside_the_labels_is_a_miss_of_its_true_label_without_a_row()
    {
        // "" (an unparseable output) is predicted for a "b": b's recall drops, no row for "", nobody's precision drops.
        var report = ClassificationMetrics.Compute(["a", "b", "b"], ["a", "", "b"], labels: ["a", "b"]);
        report.Labels.Should().Equal("a", "b");
        report.PerLabel[0].Should().Be(new LabelMetrics("a", 1, 1, 1, 1));
        report.PerLabel[1].Should().Be(new LabelMetrics("b", 1, 0.5, 2.0 / 3, 2));
        report.Accuracy.Should().BeApproximately(2.0 / 3, Tolerance);
        report.Micro.Precision.Should().Be(1.0, "the unlisted prediction is no false positive");
        report.Micro.Recall.Should().BeApproximately(2.0 / 3, Tolerance);
        report.ConfusionMatrix.Sum(r => r.Sum()).Should().Be(2, "the sample predicted as \"\" is not in the matrix");

        // A true label outside the list: no row, no support, but a false positive of the listed label predicted for it.
        var subset = ClassificationMetrics.Compute(["a", "x", "x"], ["a", "a", "x"], labels: ["a"]);
        subset.PerLabel.Should().Equal(new LabelMetrics("a", 0.5, 1, 2.0 / 3, 1));
        subset.Micro.Support.Should().Be(1);
        subset.Accuracy.Should().BeApproximately(2.0 / 3, Tolerance, "accuracy is over every sample");
    }

    [Fact]
    public void Labels_that_are_a_permutation_of_the_present_ones_keep_the_accuracy_row_in_their_order()
    {
        var sorted = ClassificationMetrics.Compute(["a", "b", "a"], ["a", "b", "b"]);
        var permuted = ClassificationMetrics.Compute(["a", "b", "a"], ["a", "b", "b"], labels: ["b", "a"]);
        permuted.MicroIsAccuracy.Should().BeTrue();
        permuted.Labels.Should().Equal("b", "a");
        permuted.PerLabel.Should().Equal(sorted.PerLabel[1], sorted.PerLabel[0]);
        permuted.Macro.Should().Be(sorted.Macro);
        permuted.ToText().Should().Contain("    accuracy                           0.67         3\n");
        permuted.ToText().IndexOf("           b ", StringComparison.Ordinal).Should().BeLessThan(permuted.ToText().IndexOf("           a ", StringComparison.Ordinal));
    }

    [Fact]
    public void Bad_labels_are_rejected_naming_the_argument()
    {
        FluentActions.Invoking(() => ClassificationMetrics.Compute(["a"], ["a"], labels: []))
            .Should().Throw<ArgumentException>().WithParameterName("labels").WithMessage("*at least one label*");
        FluentActions.Invoking(() => ClassificationMetrics.Compute(["a"], ["a"], labels: ["a", "b", "a"]))
            .Should().Throw<ArgumentException>().WithParameterName("labels").WithMessage("labels[2] repeats the label 'a'*");
        FluentActions.Invoking(() => ClassificationMetrics.Compute(["a"], ["a"], labels: ["a", null!]))
            .Should().Throw<ArgumentNullException>().WithParameterName("labels").WithMessage("labels[1] is null*");
    }

    [Fact]
    public void NaN_zero_division_is_left_out_of_averages()
    {
        // "c" is never predicted: its precision is NaN and the macro precision averages a and b only.
        var report = ClassificationMetrics.Compute(["a", "b", "c"], ["a", "b", "a"], ZeroDivision.NaN);
        report.PerLabel[2].Precision.Should().Be(double.NaN);
        report.PerLabel[2].F1.Should().Be(0);
        report.Macro.Precision.Should().BeApproximately((0.5 + 1.0) / 2, Tolerance);
        report.Macro.Recall.Should().BeApproximately(2.0 / 3, Tolerance);
    }

    [Fact]
    public void Report_rounds_half_to_even_on_the_exact_binary_value_as_Python_does()
    {
        // Python: format(0.125, ".2f") == "0.12", format(0.375, ".2f") == "0.38", format(2.675, ".2f") == "2.67".
        PythonFloatFormatFixed(0.125, 2).Should().Be("0.12");
        PythonFloatFormatFixed(0.375, 2).Should().Be("0.38");
        PythonFloatFormatFixed(2.675, 2).Should().Be("2.67");
        PythonFloatFormatFixed(0.5, 0).Should().Be("0");
        PythonFloatFormatFixed(1.5, 0).Should().Be("2");
        PythonFloatFormatFixed(2.0 / 3, 4).Should().Be("0.6667");
        PythonFloatFormatFixed(double.NaN, 2).Should().Be("nan");
    }

    private static string PythonFloatFormatFixed(double value, int digits) => PythonFloatFormat.Fixed(value, digits);

    [Fact]
    public void Bad_input_is_rejected_naming_the_argument()
    {
        FluentActions.Invoking(() => ClassificationMetrics.Compute(["a", "b"], ["a"]))
            .Should().Throw<ArgumentException>().WithParameterName("yPred").WithMessage("*1 labels but yTrue has 2*");
        FluentActions.Invoking(() => ClassificationMetrics.Compute([], []))
            .Should().Throw<ArgumentException>().WithParameterName("yTrue");
        FluentActions.Invoking(() => ClassificationMetrics.Compute(["a"], [null!]))
            .Should().Throw<ArgumentNullException>().WithMessage("yPred[0] is null*");
        FluentActions.Invoking(() => ClassificationMetrics.Compute(["a"], ["a"], (ZeroDivision)7))
            .Should().Throw<ArgumentOutOfRangeException>().WithParameterName("zeroDivision");
    }
}
