namespace Mistral.Eval.Data;

/// <summary>Which columns (JSON keys, CSV header names, Parquet fields) hold an example's input and target.</summary>
public sealed record ColumnMapping
{
    /// <summary>Creates a mapping.</summary>
    /// <param name="inputColumn">The input column, e.g. <c>text</c> or <c>dialogue</c>.</param>
    /// <param name="targetColumn">The target column, e.g. <c>label</c> or <c>summary</c>.</param>
    /// <exception cref="ArgumentException">A name is empty, or both name the same column.</exception>
    public ColumnMapping(string inputColumn, string targetColumn)
    {
        ArgumentException.ThrowIfNullOrEmpty(inputColumn);
        ArgumentException.ThrowIfNullOrEmpty(targetColumn);
        if (string.Equals(inputColumn, targetColumn, StringComparison.Ordinal))
        {
            throw new ArgumentException($"inputColumn and targetColumn are both '{inputColumn}'; they must differ.", nameof(targetColumn));
        }

        InputColumn = inputColumn;
        TargetColumn = targetColumn;
    }

    /// <summary>The study's classification data (20 Newsgroups): <c>text</c> → input, <c>label</c> → target.</summary>
    public static ColumnMapping Classification { get; } = new("text", "label");

    /// <summary>The study's summarization data (Samsum): <c>dialogue</c> → input, <c>summary</c> → target.</summary>
    public static ColumnMapping Summarization { get; } = new("dialogue", "summary");

    /// <summary>The column holding the input.</summary>
    public string InputColumn { get; }

    /// <summary>The column holding the target.</summary>
    public string TargetColumn { get; }
}
