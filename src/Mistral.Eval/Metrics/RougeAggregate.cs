namespace Mistral.Eval.Metrics;

/// <summary>
/// The aggregate of one ROUGE type over a set of examples: the exact mean and the bootstrap
/// percentile interval of the mean (rouge_score's <c>BootstrapAggregator</c> reports low/mid/high;
/// Hugging Face <c>evaluate</c> reports <c>Mid.FMeasure</c>).
/// </summary>
/// <param name="Mean">The arithmetic mean of the per-example scores.</param>
/// <param name="Low">The lower percentile ((1 − level)/2) of the bootstrap means.</param>
/// <param name="Mid">The median of the bootstrap means.</param>
/// <param name="High">The upper percentile ((1 + level)/2) of the bootstrap means.</param>
public sealed record RougeAggregate(RougeScore Mean, RougeScore Low, RougeScore Mid, RougeScore High)
{
    /// <summary>The same aggregate ×100, the scale the study's tables use.</summary>
    /// <returns>The scaled aggregate.</returns>
    public RougeAggregate ToPercent() => new(Mean.ToPercent(), Low.ToPercent(), Mid.ToPercent(), High.ToPercent());
}
