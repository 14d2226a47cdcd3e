namespace Mistral.Eval.Metrics;

/// <summary>Precision, recall and F1 averaged over labels, with the total support.</summary>
/// <param name="Precision">The averaged precision.</param>
/// <param name="Recall">The averaged recall.</param>
/// <param name="F1">The averaged F1.</param>
/// <param name="Support">The summed support of the report's labels: the number of samples whose true label is one of them (all samples when the labels were not given).</param>
public sealed record AveragedMetrics(double Precision, double Recall, double F1, int Support);
