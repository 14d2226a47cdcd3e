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
    /// <returns>The report; labels are the code-point-sorted union of true and predicted labels.</returns>
    /// <exception cref="ArgumentNullException">A list or one of its labels is null.</exception>
    /// <exception cref="ArgumentException">The lists are empty or have different lengths.</exception>
    public static ClassificationReport Compute(
        IReadOnlyList<string> yTrue, IReadOnlyList<string> yPred, ZeroDivision zeroDivision = ZeroDivision.Zero)
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

        var labelSet = new SortedSet<string>(CodePointComparer.Instance);
        for (int i = 0; i < yTrue.Count; i++)
        {
            labelSet.Add(yTrue[i] ?? throw new ArgumentNullException(nameof(yTrue), $"{nameof(yTrue)}[{i}] is null."));
            labelSet.Add(yPred[i] ?? throw new ArgumentNullException(nameof(yPred), $"{nameof(yPred)}[{i}] is null."));
        }

        string[] labels = labelSet.ToArray();
        var index = new Dictionary<string, int>(labels.Length, StringComparer.Ordinal);
        for (int i = 0; i < labels.Length; i++)
        {
            index.Add(labels[i], i);
        }

        int k = labels.Length;
        var matrix = new int[k][];
        for (int i = 0; i < k; i++)
        {
            matrix[i] = new int[k];
        }

        int correct = 0;
        for (int i = 0; i < yTrue.Count; i++)
        {
            int t = index[yTrue[i]];
            int p = index[yPred[i]];
            matrix[t][p]++;
            if (t == p)
            {
                correct++;
            }
        }

        int samples = yTrue.Count;
        var perLabel = new LabelMetrics[k];
        for (int c = 0; c < k; c++)
        {
            int tp = matrix[c][c];
            int trueCount = 0;
            int predictedCount = 0;
            for (int j = 0; j < k; j++)
            {
                trueCount += matrix[c][j];
                predictedCount += matrix[j][c];
            }

            perLabel[c] = Score(labels[c], tp, predictedCount, trueCount, zeroDivision);
        }

        LabelMetrics pooled = Score("", correct, samples, samples, zeroDivision);
        var micro = new AveragedMetrics(pooled.Precision, pooled.Recall, pooled.F1, samples);
        var macro = new AveragedMetrics(
            Average(perLabel, m => m.Precision, weighted: false),
            Average(perLabel, m => m.Recall, weighted: false),
            Average(perLabel, m => m.F1, weighted: false),
            samples);
        var weightedAverage = new AveragedMetrics(
            Average(perLabel, m => m.Precision, weighted: true),
            Average(perLabel, m => m.Recall, weighted: true),
            Average(perLabel, m => m.F1, weighted: true),
            samples);
        return new ClassificationReport(
            labels, (double)correct / samples, perLabel, micro, macro, weightedAverage, matrix, zeroDivision);
    }

    /// <summary>
    /// Precision and recall with scikit-learn's zero-division rule, and F1 as scikit-learn 1.2
    /// computes it from them (2PR/(P+R), 0 when P+R is 0). When P or R is a zero division, TP is 0, so
    /// F1 is 0 — which is also what scikit-learn ≥ 1.3 (F1 = 2TP/(2TP+FP+FN)) gives for a label in the
    /// union of true and predicted labels.
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
        double f1 = predicted == 0 || actual == 0 || precision + recall == 0
            ? 0.0
            : 2 * precision * recall / (precision + recall);
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

        // numpy.average with all-zero weights raises; scikit-learn then falls back to the plain mean.
        return weights == 0 ? unweightedSum / counted : sum / weights;
    }
}
