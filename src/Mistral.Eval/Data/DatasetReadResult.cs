namespace Mistral.Eval.Data;

/// <summary>What a <see cref="DatasetReader"/> read: the examples, and every row it skipped, counted by reason.</summary>
/// <param name="FilePath">The file read, or the source that several files were read from as one (an HF URI naming a split's shards).</param>
/// <param name="Examples">The examples, in file order.</param>
/// <param name="RowsSeen">Records seen (examples + skipped; blank JSONL/CSV lines are not records).</param>
/// <param name="SkipCounts">Skipped rows per reason (every reason present, zero when none).</param>
/// <param name="SkippedRows">Details of the first <see cref="ReadOptions.MaxSkippedDetails"/> skipped rows.</param>
public sealed record DatasetReadResult(
    string FilePath,
    IReadOnlyList<Example> Examples,
    long RowsSeen,
    IReadOnlyDictionary<SkipReason, long> SkipCounts,
    IReadOnlyList<SkippedRow> SkippedRows)
{
    /// <summary>The total number of skipped rows.</summary>
    public long SkippedCount => SkipCounts.Values.Sum();

    /// <summary>A one-line summary, e.g. "read 10664 of 11314 rows from 'train.parquet'; skipped 650 (NullValue 650)".</summary>
    /// <returns>The summary.</returns>
    public string Describe()
    {
        var s = $"read {Examples.Count} of {RowsSeen} rows from '{FilePath}'";
        if (SkippedCount == 0)
        {
            return s + "; skipped none";
        }

        return s + $"; skipped {SkippedCount} ("
            + string.Join(", ", SkipCounts.Where(kv => kv.Value > 0).Select(kv => $"{kv.Key} {kv.Value}")) + ")";
    }
}
