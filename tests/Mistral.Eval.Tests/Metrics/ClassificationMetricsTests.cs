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
        // tools/eval_metrics/sklearn_reference.py (scikit-learn 1.2.1, Debian python3-sklearn).
        JsonElement c = Case(name);
        string[] yTrue = Strings(c.GetProperty("y_true"));
        string[] yPred = Strings(c.GetProperty("y_pred"));
        foreach ((ZeroDivision mode, string key) in new[]
                 {
                     (ZeroDivision.Zero, "zero_division_0"), (ZeroDivision.One, "zero_division_1"), (ZeroDivision.NaN, "zero_division_nan"),
                 })
        {
            ClassificationReport report = ClassificationMetrics.Compute(yTrue, yPred, mode);
            JsonElement e = c.GetProperty(key);
            report.Labels.Should().Equal(Strings(c.GetProperty("labels")));
            report.Accuracy.Should().BeApproximately(c.GetProperty("accuracy").GetDouble(), Tolerance);
            report.ConfusionMatrix.Select(r => r.ToArray()).Should().BeEquivalentTo(
                c.GetProperty("confusion_matrix").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()),
                o => o.WithStrictOrdering());

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
            foreach ((AveragedMetrics actual, string average) in new[] { (report.Micro, "micro"), (report.Macro, "macro"), (report.Weighted, "weighted") })
            {
                JsonElement expected = e.GetProperty(average);
                Close(actual.Precision, expected[0], $"{key} {average} precision");
                Close(actual.Recall, expected[1], $"{key} {average} recall");
                Close(actual.F1, expected[2], $"{key} {average} F1");
                actual.Support.Should().Be(yTrue.Length);
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
