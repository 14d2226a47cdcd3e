namespace Mistral.Pipeline;

/// <summary>A task's reading of one generated text.</summary>
/// <param name="Prediction">What is scored against the target (the label found, or the cleaned text when none was found).</param>
/// <param name="IsParsed">False when the text matched no label (classification); always true for free-text tasks.</param>
public sealed record PredictionParse(string Prediction, bool IsParsed);
