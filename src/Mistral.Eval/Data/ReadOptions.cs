namespace Mistral.Eval.Data;

/// <summary>How a <see cref="DatasetReader"/> treats bad rows and values.</summary>
public sealed record ReadOptions
{
    /// <summary>The default <see cref="MaxLineBytes"/>: 64 MiB.</summary>
    public const int DefaultMaxLineBytes = 64 << 20;

    private readonly int _maxSkippedDetails = 100;
    private readonly int _maxLineBytes = DefaultMaxLineBytes;

    /// <summary>What to do with a malformed record (invalid JSON, a mapped JSON string that is not valid Unicode such as <c>"\ud800"</c>, wrong CSV field count, bad quoting). Default: fail.</summary>
    public RowErrorPolicy MalformedRecords { get; init; } = RowErrorPolicy.Fail;

    /// <summary>
    /// What to do with a row whose input or target is missing, null or not a string. Default: fail.
    /// <see cref="RowErrorPolicy.Skip"/> is the study's cleaning rule (drop rows whose text or label is not a string), counted per reason.
    /// </summary>
    public RowErrorPolicy InvalidValues { get; init; } = RowErrorPolicy.Fail;

    /// <summary>Read numbers and booleans as text (JSON: their JSON text; Parquet: invariant culture) instead of treating them as non-string values.</summary>
    public bool ConvertScalarsToString { get; init; }

    /// <summary>Treat an empty CSV field as null (pandas reads it as NaN, which the study's rule drops). Default true.</summary>
    public bool CsvEmptyFieldIsNull { get; init; } = true;

    /// <summary>The CSV field delimiter. Default ','.</summary>
    public char CsvDelimiter { get; init; } = ',';

    /// <summary>How many <see cref="SkippedRow"/> details to keep (all skips are counted regardless). Default 100.</summary>
    public int MaxSkippedDetails
    {
        get => _maxSkippedDetails;
        init
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value, nameof(MaxSkippedDetails));
            _maxSkippedDetails = value;
        }
    }

    /// <summary>
    /// The longest JSONL line, or CSV record (which may span lines), in UTF-8 bytes without its line break. A longer
    /// one is an error naming the file and line whatever the row policies, found after reading at most this many
    /// bytes of it, so memory stays bounded (a line holding a whole file, a link to <c>/dev/zero</c>).
    /// Default <see cref="DefaultMaxLineBytes"/> (64 MiB); at most <see cref="Array.MaxLength"/> - 2.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1 or more than <see cref="Array.MaxLength"/> - 2.</exception>
    public int MaxLineBytes
    {
        get => _maxLineBytes;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(MaxLineBytes));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, Array.MaxLength - 2, nameof(MaxLineBytes));
            _maxLineBytes = value;
        }
    }

    /// <summary>Strict reading: any bad row is an error.</summary>
    public static ReadOptions Strict { get; } = new();

    /// <summary>The study's cleaning rule: rows whose input or target is missing or not a string are dropped and counted; malformed records still fail.</summary>
    public static ReadOptions StudyCleaning { get; } = new() { InvalidValues = RowErrorPolicy.Skip };

    internal void Validate()
    {
        if (!Enum.IsDefined(MalformedRecords))
        {
            throw new ArgumentOutOfRangeException(nameof(MalformedRecords), MalformedRecords, "Unknown RowErrorPolicy.");
        }

        if (!Enum.IsDefined(InvalidValues))
        {
            throw new ArgumentOutOfRangeException(nameof(InvalidValues), InvalidValues, "Unknown RowErrorPolicy.");
        }

        if (CsvDelimiter is '"' or '\r' or '\n')
        {
            throw new ArgumentOutOfRangeException(nameof(CsvDelimiter), CsvDelimiter, "CsvDelimiter cannot be a quote or a line break.");
        }
    }
}
