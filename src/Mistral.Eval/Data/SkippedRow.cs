namespace Mistral.Eval.Data;

/// <summary>One row that was skipped, and why.</summary>
/// <param name="Row">The 1-based line (JSONL, CSV) or 0-based row index (Parquet).</param>
/// <param name="Column">The column concerned, or null for a malformed record.</param>
/// <param name="Reason">The reason.</param>
/// <param name="Message">A human-readable explanation naming the file, row and column.</param>
public sealed record SkippedRow(long Row, string? Column, SkipReason Reason, string Message);
