using System.Text;

namespace Mistral.Eval.Metrics;

/// <summary>
/// Single-label classification metrics equal to scikit-learn's: accuracy, per-label precision,
/// recall, F1 and support, their micro, macro and weighted averages, and the confusion matrix.
/// </summary>
/// <param name="Labels">
/// The labels given to <see cref="ClassificationMetrics.Compute"/>, in their order; without them the union of true and
/// predicted labels sorted by code point (Python's order; ordinal for BMP text).
/// </param>
/// <param name="Accuracy">Fraction of exact matches over all samples (whatever <paramref name="Labels"/> holds).</param>
/// <param name="PerLabel">Metrics of each label, in the order of <paramref name="Labels"/>.</param>
/// <param name="Micro">Pooled counts over <paramref name="Labels"/> (equal to accuracy when they are exactly the labels that occur).</param>
/// <param name="Macro">Unweighted mean over <paramref name="Labels"/>, including labels that were only predicted or never occur.</param>
/// <param name="Weighted">Mean weighted by support.</param>
/// <param name="ConfusionMatrix">
/// ConfusionMatrix[i][j] = samples of true label i predicted as label j (samples with a true or predicted label
/// outside <paramref name="Labels"/> are not counted).
/// </param>
/// <param name="ZeroDivision">How zero denominators were resolved.</param>
/// <param name="MicroIsAccuracy">
/// True when <paramref name="Labels"/> are exactly the labels that occur in the truth or the predictions (in any
/// order): the micro average is then accuracy, and <see cref="ToText"/> prints an "accuracy" row; otherwise it prints
/// a "micro avg" row, as scikit-learn's <c>classification_report</c> does.
/// </param>
public sealed record ClassificationReport(
    IReadOnlyList<string> Labels,
    double Accuracy,
    IReadOnlyList<LabelMetrics> PerLabel,
    AveragedMetrics Micro,
    AveragedMetrics Macro,
    AveragedMetrics Weighted,
    IReadOnlyList<IReadOnlyList<int>> ConfusionMatrix,
    ZeroDivision ZeroDivision,
    bool MicroIsAccuracy = true)
{
    /// <summary>
    /// The report as text, character for character what scikit-learn's <c>classification_report</c>
    /// (with the same <c>labels=</c>) prints for single-label data: an "accuracy" row in place of the micro average
    /// when <see cref="MicroIsAccuracy"/>, else a "micro avg" row; average rows show the summed support of the labels.
    /// </summary>
    /// <remarks>
    /// scikit-learn counts in floating point when no sample at all is classified correctly, and then
    /// prints supports as "1.0"; this method reproduces that.
    /// </remarks>
    /// <param name="digits">Digits after the decimal point (scikit-learn's default 2).</param>
    /// <returns>The text, ending in a newline.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="digits"/> is negative or above 15.</exception>
    public string ToText(int digits = 2)
    {
        if (digits is < 0 or > 15)
        {
            throw new ArgumentOutOfRangeException(nameof(digits), digits, $"{nameof(digits)} must be between 0 and 15.");
        }

        const string longestHeading = "weighted avg";
        int width = Math.Max(Math.Max(Labels.Count == 0 ? 0 : Labels.Max(CodePoints), longestHeading.Length), digits);
        var text = new StringBuilder();
        text.Append(new string(' ', width)).Append(' ');
        foreach (string header in (ReadOnlySpan<string>)["precision", "recall", "f1-score", "support"])
        {
            text.Append(' ').Append(header.PadLeft(9));
        }

        text.Append("\n\n");
        // scikit-learn's counts become floats when no sample at all (listed label or not) is correct.
        bool floatSupport = Accuracy == 0;
        foreach (LabelMetrics row in PerLabel)
        {
            AppendRow(text, row.Label, row.Precision, row.Recall, row.F1, Support(row.Support, floatSupport), width, digits);
        }

        text.Append('\n');
        if (MicroIsAccuracy)
        {
            // scikit-learn prints the micro F1 here, which is the accuracy.
            text.Append(PadLeft("accuracy", width)).Append(' ')
                .Append(' ').Append(new string(' ', 9))
                .Append(' ').Append(new string(' ', 9))
                .Append(' ').Append(PythonFloatFormat.Fixed(Micro.F1, digits).PadLeft(9))
                .Append(' ').Append(Support(Micro.Support, floatSupport).PadLeft(9))
                .Append('\n');
        }
        else
        {
            AppendRow(text, "micro avg", Micro.Precision, Micro.Recall, Micro.F1, Support(Micro.Support, floatSupport), width, digits);
        }

        AppendRow(text, "macro avg", Macro.Precision, Macro.Recall, Macro.F1, Support(Macro.Support, floatSupport), width, digits);
        AppendRow(text, longestHeading, Weighted.Precision, Weighted.Recall, Weighted.F1, Support(Weighted.Support, floatSupport), width, digits);
        return text.ToString();
    }

    /// <summary>Python pads by code points, not UTF-16 units.</summary>
    private static int CodePoints(string text) => text.EnumerateRunes().Count();

    private static string PadLeft(string text, int width) =>
        new string(' ', Math.Max(0, width - CodePoints(text))) + text;

    private static string Support(int support, bool asFloat) =>
        support.ToString(System.Globalization.CultureInfo.InvariantCulture) + (asFloat ? ".0" : "");

    private static void AppendRow(StringBuilder text, string name, double p, double r, double f, string support, int width, int digits)
    {
        text.Append(PadLeft(name, width)).Append(' ');
        foreach (double value in (ReadOnlySpan<double>)[p, r, f])
        {
            text.Append(' ').Append(PythonFloatFormat.Fixed(value, digits).PadLeft(9));
        }

        text.Append(' ').Append(support.PadLeft(9)).Append('\n');
    }
}
