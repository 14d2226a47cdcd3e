using Mistral.Eval.Data;

namespace Mistral.Eval.Metrics;

/// <summary>
/// Single-label classification metrics computed as scikit-learn computes them
/// (<c>accuracy_score</c>, <c>precision_recall_fscore_support</c>, <c>confusion_matrix</c>,
/// <c>classification_report</c>) with labels compared as exact strings.
/// </summary>
public static class ClassificationMetrics
{
    /// <summary>Computes accuracy, per-label and averaged precision/recall/F1, and the confusion matrix.</summary>
    /// <param name="yTrue">The gold labels.</param>
    /// <param name="yPred">The predicted labels, as many as <paramref name="yTrue"/>.</param>
    /// <param name="zeroDivision">What a precision or recall with a zero denominator becomes.</param>
    /// <param name="labels">
    /// <para>The labels to report, in this order (scikit-learn's <c>labels=</c>); null means the code-point-sorted
    /// union of true and predicted labels. Give the full class list so that a class missing from a small sample
    /// still has its row (support 0) and counts in the macro average.</para>
    /// <para>As in scikit-learn 1.2: a prediction that is not in the list (e.g. an unparseable output) is a false
    /// negative of its true label but has no row and is no false positive of anything; a sample whose true label is
    /// not in the list has no row and no support, but is a false positive of its predicted label when that one is
    /// listed; micro averages pool the listed labels only (so they differ from accuracy, and
    /// <see cref="ClassificationReport.ToText"/> prints a "micro avg" row) unless the list holds exactly the labels
    /// that occur; the confusion matrix keeps the samples whose true and predicted labels are both listed. Unlike
    /// scikit-learn, duplicate labels are rejected (scikit-learn silently double-counts them), and a list with no
    /// label of <paramref name="yTrue"/> gives an all-zero confusion matrix (scikit-learn's <c>confusion_matrix</c>
    /// raises; its other metrics are computed, as here).</para>
    /// </param>
    /// <returns>The report.</returns>
    /// <exception cref="ArgumentNullException">A list or one of its labels is null.</exception>
    /// <exception cref="ArgumentException">The lists are empty or have different lengths, or <paramref name="labels"/> is empty or repeats a label.</exception>
    public static ClassificationReport Compute(
        IReadOnlyList<string> yTrue, IReadOnlyList<string> yPred, ZeroDivision zeroDivision = ZeroDivision.Zero,
        IReadOnlyList<string>? labels = null)
    {
        ArgumentNullException.ThrowIfNull(yTrue);
        ArgumentNullException.ThrowIfNull(yPred);
        if (yTrue.Count != yPred.Count)
        {
            throw new ArgumentException(
                $"{nameof(yPred)} has {yPred.Count} labels but {nameof(yTrue)} has {yTrue.Count}; they must pair one to one.",
                nameof(yPred));
        }

        if (yTrue.Count == 0)
        {
            throw new ArgumentException($"{nameof(yTrue)} and {nameof(yPred)} must contain at least one sample.", nameof(yTrue));
        }

        if (!Enum.IsDefined(zeroDivision))
        {
            throw new ArgumentOutOfRangeException(nameof(zeroDivision), zeroDivision, $"{nameof(zeroDivision)} is not a {nameof(ZeroDivision)} value.");
        }

        var present = new SortedSet<string>(CodePointComparer.Instance);
        for (int i = 0; i < yTrue.Count; i++)
        {
            present.Add(yTrue[i] ?? throw new ArgumentNullException(nameof(yTrue), $"{nameof(yTrue)}[{i}] is null."));
            present.Add(yPred[i] ?? throw new ArgumentNullException(nameof(yPred), $"{nameof(yPred)}[{i}] is null."));
        }

        string[] reported = labels is null ? present.ToArray() : CheckLabels(labels);
        bool microIsAccuracy = labels is null || (reported.Length == present.Count && reported.All(present.Contains));
        var index = new Dictionary<string, int>(reported.Length, StringComparer.Ordinal);
        for (int i = 0; i < reported.Length; i++)
        {
            index.Add(reported[i], i);
        }

        int k = reported.Length;
        var matrix = new int[k][];
        for (int i = 0; i < k; i++)
        {
            matrix[i] = new int[k];
        }

        var truePositives = new int[k];
        var predictedCounts = new int[k];
        var trueCounts = new int[k];
        int correct = 0;
        for (int i = 0; i < yTrue.Count; i++)
        {
            bool trueListed = index.TryGetValue(yTrue[i], out int t);
            bool predListed = index.TryGetValue(yPred[i], out int p);
            if (trueListed)
            {
                trueCounts[t]++;
            }

            if (predListed)
            {
                predictedCounts[p]++;
            }

            if (trueListed && predListed)
            {
                matrix[t][p]++;
            }

            if (string.Equals(yTrue[i], yPred[i], StringComparison.Ordinal))
            {
                correct++;
                if (trueListed)
                {
                    truePositives[t]++;
                }
            }
        }

        var perLabel = new LabelMetrics[k];
        for (int c = 0; c < k; c++)
        {
            perLabel[c] = Score(reported[c], truePositives[c], predictedCounts[c], trueCounts[c], zeroDivision);
        }

        int support = trueCounts.Sum();
        LabelMetrics pooled = Score("", truePositives.Sum(), predictedCounts.Sum(), support, zeroDivision);
        var micro = new AveragedMetrics(pooled.Precision, pooled.Recall, pooled.F1, support);
        var macro = new AveragedMetrics(
            Average(perLabel, m => m.Precision, weighted: false),
            Average(perLabel, m => m.Recall, weighted: false),
            Average(perLabel, m => m.F1, weighted: false),
            support);
        AveragedMetrics weightedAverage;
        if (support == 0 && zeroDivision != ZeroDivision.NaN)
        {
            // scikit-learn 1.2's early return for a weighted average over labels that never occur in the truth.
            double fallback = zeroDivision == ZeroDivision.One ? 1.0 : 0.0;
            weightedAverage = predictedCounts.Sum() == 0
                ? new AveragedMetrics(fallback, fallback, fallback, support)
                : new AveragedMetrics(0.0, fallback, 0.0, support);
        }
        else
        {
            weightedAverage = new AveragedMetrics(
                Average(perLabel, m => m.Precision, weighted: true),
                Average(perLabel, m => m.Recall, weighted: true),
                Average(perLabel, m => m.F1, weighted: true),
                support);
        }

        return new ClassificationReport(
            reported, (double)correct / yTrue.Count, perLabel, micro, macro, weightedAverage, matrix, zeroDivision, microIsAccuracy);
    }

    private static string[] CheckLabels(IReadOnlyList<string> labels)
    {
        if (labels.Count == 0)
        {
            throw new ArgumentException($"{nameof(labels)} must contain at least one label (or be null to use the labels that occur).", nameof(labels));
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        var result = new string[labels.Count];
        for (int i = 0; i < labels.Count; i++)
        {
            string label = labels[i] ?? throw new ArgumentNullException(nameof(labels), $"{nameof(labels)}[{i}] is null.");
            if (!seen.Add(label))
            {
                throw new ArgumentException($"{nameof(labels)}[{i}] repeats the label '{label}'; each label may be listed once.", nameof(labels));
            }

            result[i] = label;
        }

        return result;
    }

    /// <summary>
    /// Precision and recall with scikit-learn's zero-division rule. F1 with <see cref="ZeroDivision.Zero"/> or
    /// <see cref="ZeroDivision.One"/> is scikit-learn 1.2's 2PR/(P+R) on those values (0 when P+R is 0): a label that
    /// is neither true nor predicted gets F1 = 1 under <see cref="ZeroDivision.One"/>, 0 otherwise. With
    /// <see cref="ZeroDivision.NaN"/> it is scikit-learn ≥ 1.3's 2TP/(2TP+FP+FN): 0 when TP is 0, NaN when the
    /// label is neither true nor predicted.
    /// </summary>
    private static LabelMetrics Score(string label, int tp, int predicted, int actual, ZeroDivision zeroDivision)
    {
        double fallback = zeroDivision switch
        {
            ZeroDivision.Zero => 0.0,
            ZeroDivision.One => 1.0,
            _ => double.NaN,
        };
        double precision = predicted == 0 ? fallback : (double)tp / predicted;
        double recall = actual == 0 ? fallback : (double)tp / actual;
        double f1;
        if (zeroDivision == ZeroDivision.NaN)
        {
            f1 = predicted + actual == 0 ? double.NaN : tp == 0 ? 0.0 : 2 * precision * recall / (precision + recall);
        }
        else
        {
            f1 = precision + recall == 0 ? 0.0 : 2 * precision * recall / (precision + recall);
        }

        return new LabelMetrics(label, precision, recall, f1, actual);
    }

    /// <summary>Mean (or support-weighted mean) over labels, leaving NaN values and their weights out.</summary>
    private static double Average(LabelMetrics[] metrics, Func<LabelMetrics, double> value, bool weighted)
    {
        double sum = 0;
        double weights = 0;
        int counted = 0;
        double unweightedSum = 0;
        foreach (LabelMetrics m in metrics)
        {
            double v = value(m);
            if (double.IsNaN(v))
            {
                continue;
            }

            counted++;
            unweightedSum += v;
            sum += weighted ? v * m.Support : v;
            weights += weighted ? m.Support : 1;
        }

        if (counted == 0)
        {
            return double.NaN;
        }

        // numpy.average with all-zero weights raises; scikit-learn's _nanaverage then falls back to the plain mean.
        return weights == 0 ? unweightedSum / counted : sum / weights;
    }
}
