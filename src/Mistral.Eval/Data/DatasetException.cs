namespace Mistral.Eval.Data;

/// <summary>A dataset file cannot be read as asked: a missing column, a malformed record or a value of the wrong type.</summary>
public sealed class DatasetException : Exception
{
    /// <summary>Creates the exception; the message is built from the location and the detail.</summary>
    /// <param name="filePath">The file.</param>
    /// <param name="location">"line 3", "row 0" or null for a file-level problem.</param>
    /// <param name="row">The line/row number, if any.</param>
    /// <param name="column">The column concerned, if any.</param>
    /// <param name="detail">What is wrong and what was expected.</param>
    /// <param name="inner">The underlying exception, if any.</param>
    public DatasetException(string filePath, string? location, long? row, string? column, string detail, Exception? inner = null)
        : base(Format(filePath, location, column, detail), inner)
    {
        FilePath = filePath;
        Row = row;
        Column = column;
    }

    /// <summary>The file concerned.</summary>
    public string FilePath { get; }

    /// <summary>The 1-based line (JSONL, CSV) or 0-based row (Parquet); null for a file-level problem.</summary>
    public long? Row { get; }

    /// <summary>The column concerned; null when none.</summary>
    public string? Column { get; }

    internal static string Format(string filePath, string? location, string? column, string detail)
    {
        var where = location is null ? $"'{filePath}'" : $"'{filePath}', {location}";
        if (column is not null)
        {
            where += $", column '{column}'";
        }

        return $"{where}: {detail}";
    }
}
