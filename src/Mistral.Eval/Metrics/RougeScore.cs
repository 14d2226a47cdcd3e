namespace Mistral.Eval.Metrics;

/// <summary>Precision, recall and F-measure of one ROUGE type, as fractions in [0, 1].</summary>
/// <param name="Precision">Matches divided by the prediction's count.</param>
/// <param name="Recall">Matches divided by the target's count.</param>
/// <param name="FMeasure">2PR/(P+R), or 0 when P+R is 0.</param>
public readonly record struct RougeScore(double Precision, double Recall, double FMeasure)
{
    /// <summary>The all-zero score.</summary>
    public static RougeScore Zero => default;

    /// <summary>Builds a score from precision and recall, with F computed as rouge_score does.</summary>
    /// <param name="precision">The precision.</param>
    /// <param name="recall">The recall.</param>
    /// <returns>The score.</returns>
    public static RougeScore FromPrecisionRecall(double precision, double recall) =>
        new(precision, recall, precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0);

    /// <summary>The same score ×100, the scale the study's tables use.</summary>
    /// <returns>The scaled score.</returns>
    public RougeScore ToPercent() => new(Precision * 100, Recall * 100, FMeasure * 100);
}
