namespace Mistral.Eval.Metrics;

/// <summary>Precision, recall, F1 and support of one label.</summary>
/// <param name="Label">The label.</param>
/// <param name="Precision">TP / (TP + FP), or the zero-division value when nothing was predicted as the label.</param>
/// <param name="Recall">TP / (TP + FN), or the zero-division value when the label never occurs in the truth.</param>
/// <param name="F1">2PR / (P + R), 0 when P + R is 0 (so 0 when TP is 0, except a label neither true nor predicted: 1 with <see cref="ZeroDivision.One"/>, NaN with <see cref="ZeroDivision.NaN"/>).</param>
/// <param name="Support">Number of true occurrences of the label.</param>
public sealed record LabelMetrics(string Label, double Precision, double Recall, double F1, int Support);
