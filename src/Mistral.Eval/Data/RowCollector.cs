namespace Mistral.Eval.Data;

/// <summary>Applies <see cref="ReadOptions"/> to rows as a reader finds them: keeps examples, fails or counts skips.</summary>
internal sealed class RowCollector
{
    private readonly string _path;
    private readonly ColumnMapping _mapping;
    private readonly ReadOptions _options;
    private readonly string _unit;
    private readonly List<Example> _examples = [];
    private readonly List<SkippedRow> _skipped = [];
    private readonly Dictionary<SkipReason, long> _counts = Enum.GetValues<SkipReason>().ToDictionary(r => r, _ => 0L);
    private long _rowsSeen;

    // unit: "line" or "row", used in messages.
    public RowCollector(string path, ColumnMapping mapping, ReadOptions options, string unit)
    {
        _path = path;
        _mapping = mapping;
        _options = options;
        _unit = unit;
    }

    public string Location(long row) => $"{_unit} {row}";

    public void Malformed(long row, string detail)
    {
        _rowsSeen++;
        Issue(row, null, SkipReason.MalformedRecord, detail, _options.MalformedRecords);
    }

    public void Add(long row, RawValue input, RawValue target)
    {
        _rowsSeen++;
        if (Check(row, _mapping.InputColumn, input) is { } i && Check(row, _mapping.TargetColumn, target) is { } t)
        {
            _examples.Add(new Example(i, t) { SourceRow = row });
        }
    }

    public DatasetReadResult Result() => new(_path, _examples, _rowsSeen, _counts, _skipped);

    private string? Check(long row, string column, RawValue v)
    {
        switch (v.Kind)
        {
            case RawValueKind.String:
                return v.Text;
            case RawValueKind.Scalar when _options.ConvertScalarsToString:
                return v.Text;
            case RawValueKind.Malformed:
                Issue(row, column, SkipReason.MalformedRecord, v.Description!, _options.MalformedRecords);
                return null;
            case RawValueKind.Missing:
                Issue(row, column, SkipReason.MissingValue, "the column is absent from this record; expected a string", _options.InvalidValues);
                return null;
            case RawValueKind.Null:
                Issue(row, column, SkipReason.NullValue, "the value is null; expected a string", _options.InvalidValues);
                return null;
            default:
                var hint = v.Kind == RawValueKind.Scalar ? " (set ReadOptions.ConvertScalarsToString to read it as text)" : string.Empty;
                Issue(row, column, SkipReason.NonStringValue, $"the value is {v.Description}; expected a string{hint}", _options.InvalidValues);
                return null;
        }
    }

    private void Issue(long row, string? column, SkipReason reason, string detail, RowErrorPolicy policy)
    {
        if (policy == RowErrorPolicy.Fail)
        {
            throw new DatasetException(_path, Location(row), row, column, detail);
        }

        _counts[reason]++;
        if (_skipped.Count < _options.MaxSkippedDetails)
        {
            _skipped.Add(new SkippedRow(row, column, reason, DatasetException.Format(_path, Location(row), column, detail)));
        }
    }
}
