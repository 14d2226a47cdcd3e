using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Parquet;
using Parquet.Schema;

namespace Mistral.Eval.Data;

/// <summary>
/// Reads examples from JSONL, CSV (RFC 4180) and Parquet files (the format Hugging Face datasets are published in)
/// through a <see cref="ColumnMapping"/>. Bad input is an error naming the file, line/row and column, or — where
/// <see cref="ReadOptions"/> says so — a skipped row counted by reason in the <see cref="DatasetReadResult"/>.
/// </summary>
public sealed class DatasetReader
{
    private readonly ILogger _logger;

    /// <summary>Creates a reader.</summary>
    /// <param name="logger">Receives a summary line when rows are skipped.</param>
    public DatasetReader(ILogger<DatasetReader>? logger = null)
    {
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Reads a file, choosing the format by extension: <c>.jsonl</c>/<c>.ndjson</c>, <c>.csv</c>, <c>.parquet</c>.</summary>
    /// <param name="path">The file.</param>
    /// <param name="mapping">Which columns hold input and target.</param>
    /// <param name="options">Bad-row handling; <see cref="ReadOptions.Strict"/> when null.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The examples and skip counts.</returns>
    /// <exception cref="ArgumentException">The extension is not one of these.</exception>
    public Task<DatasetReadResult> ReadAsync(string path, ColumnMapping mapping, ReadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".jsonl" or ".ndjson" => ReadJsonlAsync(path, mapping, options, cancellationToken),
            ".csv" => ReadCsvAsync(path, mapping, options, cancellationToken),
            ".parquet" => ReadParquetAsync(path, mapping, options, cancellationToken),
            var ext => throw new ArgumentException($"Cannot tell the format of '{path}' from its extension '{ext}'; expected .jsonl, .ndjson, .csv or .parquet.", nameof(path)),
        };
    }

    /// <summary>
    /// Reads JSON Lines: one JSON object per line; blank lines are ignored. Rows are numbered by their 1-based line.
    /// Lines end with LF, CRLF or a lone CR; the file must be UTF-8 (a leading byte order mark is allowed), and
    /// invalid UTF-8 is an error naming the exact line whatever the policy.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="mapping">Which keys hold input and target.</param>
    /// <param name="options">Bad-row handling; <see cref="ReadOptions.Strict"/> when null.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The examples and skip counts.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DatasetException">A line is malformed (invalid JSON, a mapped string with a lone surrogate escape) or a
    /// value is missing/not a string (under <see cref="RowErrorPolicy.Fail"/>), no record has a mapped column, the file is not
    /// UTF-8, or a line is longer than <see cref="ReadOptions.MaxLineBytes"/> (whatever the policies).</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public async Task<DatasetReadResult> ReadJsonlAsync(string path, ColumnMapping mapping, ReadOptions? options = null, CancellationToken cancellationToken = default)
    {
        options = Prepare(path, mapping, options);
        var rows = new RowCollector(path, mapping, options, "line");
        bool sawInput = false, sawTarget = false;
        await using var stream = OpenSequential(path);
        var lines = new Utf8LineReader(stream, maxLineBytes: options.MaxLineBytes);
        while (true)
        {
            try
            {
                if (!await lines.ReadLineAsync(cancellationToken).ConfigureAwait(false))
                {
                    break;
                }
            }
            catch (DecoderFallbackException e)
            {
                throw new DatasetException(path, rows.Location(lines.LineNumber), lines.LineNumber, null, $"invalid UTF-8: {lines.Describe(e)}.", e);
            }
            catch (LineTooLongException e)
            {
                throw new DatasetException(path, rows.Location(e.Line), e.Line, null,
                    $"the line is longer than {e.MaxLineBytes} bytes (ReadOptions.MaxLineBytes); expected one JSON object per line.", e);
            }

            long line = lines.LineNumber;
            var text = lines.Content;
            if (text.Span.IsWhiteSpace())
            {
                continue;
            }

            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(text);
            }
            catch (JsonException e)
            {
                rows.Malformed(line, $"not valid JSON: {e.Message}");
                continue;
            }

            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                {
                    rows.Malformed(line, $"the line is a JSON {doc.RootElement.ValueKind.ToString().ToLowerInvariant()}; expected an object");
                    continue;
                }

                var input = JsonValue(doc.RootElement, mapping.InputColumn);
                var target = JsonValue(doc.RootElement, mapping.TargetColumn);
                sawInput |= input.Kind != RawValueKind.Missing;
                sawTarget |= target.Kind != RawValueKind.Missing;
                rows.Add(line, input, target);
            }
        }

        var result = rows.Result();
        if (result.RowsSeen > result.SkipCounts[SkipReason.MalformedRecord] && (!sawInput || !sawTarget))
        {
            var col = !sawInput ? mapping.InputColumn : mapping.TargetColumn;
            throw new DatasetException(path, null, null, col, "no record in the file has this key; check the column mapping.");
        }

        return Finish(result);
    }

    /// <summary>
    /// Reads CSV with a header row (RFC 4180 quoting; quoted fields may span lines). Fully empty lines are ignored.
    /// Rows are numbered by the 1-based line on which the record starts. The file must be UTF-8 (a leading byte
    /// order mark is allowed); invalid UTF-8 is an error naming its physical line and the line its record starts on.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="mapping">Which header names hold input and target.</param>
    /// <param name="options">Bad-row handling; <see cref="ReadOptions.Strict"/> when null.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The examples and skip counts.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DatasetException">No header, a mapped column missing from the header, (under <see cref="RowErrorPolicy.Fail"/>) a
    /// malformed record or empty value, invalid UTF-8, or a line or record longer than <see cref="ReadOptions.MaxLineBytes"/>
    /// (whatever the policies).</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public async Task<DatasetReadResult> ReadCsvAsync(string path, ColumnMapping mapping, ReadOptions? options = null, CancellationToken cancellationToken = default)
    {
        options = Prepare(path, mapping, options);
        var rows = new RowCollector(path, mapping, options, "line");
        await using var stream = OpenSequential(path);
        var csv = new CsvRecordReader(new Utf8LineReader(stream, maxLineBytes: options.MaxLineBytes), options.CsvDelimiter);
        CsvRecord? header;
        do
        {
            header = await ReadCsvRecordAsync(csv, path, cancellationToken).ConfigureAwait(false);
        }
        while (header is not null && header.IsBlank);

        if (header is null)
        {
            throw new DatasetException(path, null, null, null, "the file is empty; expected a header row.");
        }

        if (header.Error is not null)
        {
            throw new DatasetException(path, $"line {header.Line}", header.Line, null, $"malformed header: {header.Error}.");
        }

        var names = header.Fields;
        var duplicate = names.GroupBy(n => n, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new DatasetException(path, $"line {header.Line}", header.Line, duplicate.Key, "the header names this column twice.");
        }

        int inputIndex = ColumnIndex(path, header, mapping.InputColumn);
        int targetIndex = ColumnIndex(path, header, mapping.TargetColumn);
        while (await ReadCsvRecordAsync(csv, path, cancellationToken).ConfigureAwait(false) is { } record)
        {
            if (record.IsBlank)
            {
                continue;
            }

            if (record.Error is not null)
            {
                rows.Malformed(record.Line, record.Error);
                continue;
            }

            if (record.Fields.Count != names.Count)
            {
                rows.Malformed(record.Line, $"the record has {record.Fields.Count} fields but the header has {names.Count}");
                continue;
            }

            rows.Add(record.Line, CsvValue(record.Fields[inputIndex], options), CsvValue(record.Fields[targetIndex], options));
        }

        return Finish(rows.Result());
    }

    /// <summary>
    /// Reads a Parquet file's top-level columns (all row groups). String columns are read as text (nulls are null
    /// values); numeric/boolean columns are non-string unless <see cref="ReadOptions.ConvertScalarsToString"/>.
    /// Rows are numbered by their 0-based index across row groups.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="mapping">Which fields hold input and target.</param>
    /// <param name="options">Bad-row handling; <see cref="ReadOptions.Strict"/> when null.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The examples and skip counts.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DatasetException">Not a Parquet file, a corrupt one (the footer length, the footer's Thrift, each
    /// column chunk's metadata and page headers are checked before Parquet.Net reads them, and whatever Parquet.Net
    /// throws is wrapped, naming the row group and column), a mapped column missing, or (under
    /// <see cref="RowErrorPolicy.Fail"/>) a null or non-string value.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public async Task<DatasetReadResult> ReadParquetAsync(string path, ColumnMapping mapping, ReadOptions? options = null, CancellationToken cancellationToken = default)
    {
        options = Prepare(path, mapping, options);
        var rows = new RowCollector(path, mapping, options, "row");
        await using var stream = File.OpenRead(path);
        long dataEnd = await CheckParquetFrameAsync(path, stream, cancellationToken).ConfigureAwait(false);

        // Parquet.Net reports corrupt input with many exception types (Thrift, null references, overflows, out of
        // range, ...): whatever it throws becomes a DatasetException naming the file, and the row group and column
        // being read when known.
        string? where = null;
        string? column = null;
        try
        {
            var reader = await ParquetReader.CreateAsync(stream, cancellationToken: cancellationToken).ConfigureAwait(false);
            await using (reader)
            {
                var topLevel = reader.Schema.Fields.OfType<DataField>().ToArray();
                var inputField = ParquetField(path, topLevel, mapping.InputColumn);
                var targetField = ParquetField(path, topLevel, mapping.TargetColumn);
                long offset = 0;
                for (int g = 0; g < reader.RowGroupCount; g++)
                {
                    (where, column) = ($"row group {g}", null);
                    using var group = reader.OpenRowGroupReader(g);
                    long count = group.RowCount;
                    if (count < 0 || count > Array.MaxLength)
                    {
                        throw new DatasetException(path, where, null, null, $"the row group says it has {count} rows; expected 0 to {Array.MaxLength}. The file is corrupt.");
                    }

                    int n = (int)count;
                    where = n == 0 ? where : $"row group {g} (rows {offset} to {offset + n - 1})";
                    CheckParquetChunk(path, where, group, inputField, n, dataEnd, stream);
                    CheckParquetChunk(path, where, group, targetField, n, dataEnd, stream);
                    column = inputField.Name;
                    var inputs = await ReadParquetColumnAsync(group, inputField, n, cancellationToken).ConfigureAwait(false);
                    column = targetField.Name;
                    var targets = await ReadParquetColumnAsync(group, targetField, n, cancellationToken).ConfigureAwait(false);
                    (where, column) = (null, null);
                    for (int i = 0; i < n; i++)
                    {
                        rows.Add(offset + i, inputs[i], targets[i]);
                    }

                    offset += n;
                }
            }
        }
        catch (Exception e) when (e is not DatasetException && !(e is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            var detail = where is null
                ? $"not a readable Parquet file ({e.GetType().Name}: {e.Message})."
                : $"cannot read {(column is null ? "the row group" : "the column chunk")} ({e.GetType().Name}: {e.Message}); the file is corrupt or uses a feature Parquet.Net does not read.";
            throw new DatasetException(path, where, null, column, detail, e);
        }

        return Finish(rows.Result());
    }

    // A Parquet file is "PAR1", the data, the footer, the footer's length (int32, little-endian) and "PAR1". The
    // length is checked against the file before Parquet.Net allocates it (a corrupt length of int.MaxValue was an
    // OutOfMemoryException). Returns where the footer starts (the end of the column data); leaves the stream at 0.
    private static async Task<long> CheckParquetFrameAsync(string path, FileStream stream, CancellationToken ct)
    {
        if (!stream.CanSeek)
        {
            throw new DatasetException(path, null, null, null, "not a readable Parquet file: it is not a regular file, and a Parquet file is read from its end.");
        }

        long length = stream.Length;
        if (length < 12)
        {
            throw new DatasetException(path, null, null, null, $"not a readable Parquet file: it is {length} bytes; expected at least 12 (PAR1, the footer, its length, PAR1).");
        }

        var head = new byte[4];
        var tail = new byte[8];
        await stream.ReadExactlyAsync(head, ct).ConfigureAwait(false);
        stream.Seek(length - 8, SeekOrigin.Begin);
        await stream.ReadExactlyAsync(tail, ct).ConfigureAwait(false);
        stream.Seek(0, SeekOrigin.Begin);
        if (!head.AsSpan().SequenceEqual("PAR1"u8) || !tail.AsSpan(4).SequenceEqual("PAR1"u8))
        {
            var encrypted = tail.AsSpan(4).SequenceEqual("PARE"u8) ? " (it ends with PARE: encrypted Parquet is not supported)" : string.Empty;
            throw new DatasetException(path, null, null, null, $"not a readable Parquet file: expected the magic bytes PAR1 at its start and end{encrypted}.");
        }

        int footer = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(tail);
        if (footer <= 0 || footer > length - 12)
        {
            throw new DatasetException(path, null, null, null,
                $"not a readable Parquet file: the footer length {footer} does not fit in the file of {length} bytes (expected 1 to {length - 12}); the file is truncated or corrupt.");
        }

        var footerBytes = new byte[footer];
        stream.Seek(length - 8 - footer, SeekOrigin.Begin);
        await stream.ReadExactlyAsync(footerBytes, ct).ConfigureAwait(false);
        stream.Seek(0, SeekOrigin.Begin);
        if (ParquetPages.CheckFooter(footerBytes) is { } problem)
        {
            throw new DatasetException(path, null, null, null, $"not a readable Parquet file: the footer (file metadata, {footer} bytes) is not valid Thrift: {problem}; the file is corrupt.");
        }

        return length - 8 - footer;
    }

    // The chunk's metadata must agree with the row group and lie inside the file before Parquet.Net reads it.
    private static void CheckParquetChunk(string path, string where, ParquetRowGroupReader group, DataField field, int rows, long dataEnd, Stream file)
    {
        var meta = group.GetMetadata(field)?.MetaData;
        string? problem = null;
        if (meta is null)
        {
            problem = "the column chunk has no metadata";
        }
        else if (meta.NumValues != rows)
        {
            problem = $"the column chunk holds {meta.NumValues} values but the row group has {rows} rows; expected one value (or null) per row";
        }
        else if (meta.TotalCompressedSize < 0 || meta.DataPageOffset < 4 || meta.DataPageOffset > dataEnd
            || meta.DictionaryPageOffset is { } d && (d < 4 || d > dataEnd)
            || Math.Min(meta.DataPageOffset, meta.DictionaryPageOffset ?? long.MaxValue) > dataEnd - meta.TotalCompressedSize)
        {
            problem = $"the column chunk's pages (at {meta.DataPageOffset}, {meta.TotalCompressedSize} bytes) are not inside the file's data (bytes 4 to {dataEnd})";
        }
        else
        {
            long at = file.Position;
            problem = ParquetPages.Check(file, meta);
            file.Position = at;
        }

        if (problem is not null)
        {
            throw new DatasetException(path, where, null, field.Name, problem + ". The file is corrupt.");
        }
    }

    // Values of every row are read and then checked row by row (input before target) by the RowCollector, so under
    // a strict policy the error names the first offending row and column, as for JSONL and CSV.
    private static async Task<RawValue[]> ReadParquetColumnAsync(ParquetRowGroupReader group, DataField field, int n, CancellationToken ct)
    {
        var type = field.ClrType;

        // Parquet.Net 6 reports UTF-8 string columns as ReadOnlyMemory<char> (string when the schema was built in code).
        if (type == typeof(string) || type == typeof(ReadOnlyMemory<char>))
        {
            var values = new string?[n];
            await group.ReadAsync(field, values.AsMemory()!, null, ct).ConfigureAwait(false);
            return values.Select(v => v is null ? RawValue.Null : RawValue.Of(v)).ToArray();
        }

        if (type == typeof(long))
        {
            return await ScalarsAsync<long>(group, field, n, v => v.ToString(CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
        }

        if (type == typeof(int))
        {
            return await ScalarsAsync<int>(group, field, n, v => v.ToString(CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
        }

        if (type == typeof(short))
        {
            return await ScalarsAsync<short>(group, field, n, v => v.ToString(CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
        }

        if (type == typeof(double))
        {
            return await ScalarsAsync<double>(group, field, n, v => v.ToString("R", CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
        }

        if (type == typeof(float))
        {
            return await ScalarsAsync<float>(group, field, n, v => v.ToString("R", CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
        }

        if (type == typeof(bool))
        {
            return await ScalarsAsync<bool>(group, field, n, v => v ? "true" : "false", ct).ConfigureAwait(false);
        }

        var other = RawValue.Other($"of Parquet type {type.Name}");
        return Enumerable.Repeat(other, n).ToArray();
    }

    private static async Task<RawValue[]> ScalarsAsync<T>(ParquetRowGroupReader group, DataField field, int n, Func<T, string> format, CancellationToken ct)
        where T : struct
    {
        var values = new T?[n];
        await group.ReadAsync(field, values.AsMemory(), null, ct).ConfigureAwait(false);
        return values.Select(v => v is { } x ? RawValue.Scalar(format(x), $"a Parquet {typeof(T).Name} ({format(x)})") : RawValue.Null).ToArray();
    }

    private static DataField ParquetField(string path, DataField[] fields, string name)
    {
        var field = fields.FirstOrDefault(f => string.Equals(f.Name, name, StringComparison.Ordinal));
        if (field is null)
        {
            throw new DatasetException(path, null, null, name,
                $"the file has no such top-level column; its columns are {string.Join(", ", fields.Select(f => $"'{f.Name}'"))}.");
        }

        if (field.IsArray)
        {
            throw new DatasetException(path, null, null, name, "the column is a list; expected strings.");
        }

        return field;
    }

    private static int ColumnIndex(string path, CsvRecord header, string name)
    {
        for (int i = 0; i < header.Fields.Count; i++)
        {
            if (string.Equals(header.Fields[i], name, StringComparison.Ordinal))
            {
                return i;
            }
        }

        throw new DatasetException(path, $"line {header.Line}", header.Line, name,
            $"the header has no such column; its columns are {string.Join(", ", header.Fields.Select(f => $"'{f}'"))}.");
    }

    private static async Task<CsvRecord?> ReadCsvRecordAsync(CsvRecordReader csv, string path, CancellationToken ct)
    {
        try
        {
            return await csv.ReadAsync(ct).ConfigureAwait(false);
        }
        catch (DecoderFallbackException e)
        {
            throw new DatasetException(path, $"line {csv.PhysicalLine}", csv.PhysicalLine, null, $"invalid UTF-8: {csv.DescribeInvalidUtf8(e)}.", e);
        }
        catch (LineTooLongException e) when (e.RecordStartLine is { } start)
        {
            throw new DatasetException(path, $"line {e.Line}", e.Line, null,
                $"the record that starts on line {start} is longer than {e.MaxLineBytes} bytes (ReadOptions.MaxLineBytes) by this line; is a quote never closed?", e);
        }
        catch (LineTooLongException e)
        {
            throw new DatasetException(path, $"line {e.Line}", e.Line, null, $"the line is longer than {e.MaxLineBytes} bytes (ReadOptions.MaxLineBytes).", e);
        }
    }

    // Unbuffered: Utf8LineReader reads in its own blocks.
    private static FileStream OpenSequential(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous | FileOptions.SequentialScan);

    private static RawValue CsvValue(string field, ReadOptions options) =>
        field.Length == 0 && options.CsvEmptyFieldIsNull ? RawValue.Null : RawValue.Of(field);

    private static RawValue JsonValue(JsonElement obj, string key)
    {
        // Like TryGetProperty (the last of duplicate keys wins), but a key that cannot be unescaped (a lone
        // surrogate such as "\ud800") is some other key, not an exception.
        JsonElement v = default;
        bool found = false;
        foreach (var p in obj.EnumerateObject())
        {
            bool equal;
            try
            {
                equal = p.NameEquals(key);
            }
            catch (InvalidOperationException)
            {
                equal = false;
            }

            if (equal)
            {
                (v, found) = (p.Value, true);
            }
        }

        if (!found)
        {
            return RawValue.Missing;
        }

        return v.ValueKind switch
        {
            JsonValueKind.String => JsonString(v),
            JsonValueKind.Null => RawValue.Null,
            JsonValueKind.Number => RawValue.Scalar(v.GetRawText(), $"a number ({v.GetRawText()})"),
            JsonValueKind.True or JsonValueKind.False => RawValue.Scalar(v.GetRawText(), $"a boolean ({v.GetRawText()})"),
            _ => RawValue.Other($"a JSON {v.ValueKind.ToString().ToLowerInvariant()}"),
        };
    }

    // System.Text.Json parses "\ud800" (valid JSON syntax) but cannot unescape a lone surrogate into text.
    private static RawValue JsonString(JsonElement v)
    {
        try
        {
            return RawValue.Of(v.GetString()!);
        }
        catch (InvalidOperationException)
        {
            return RawValue.Malformed("the string is not valid Unicode (a lone surrogate escape such as \\ud800); expected text");
        }
    }

    private static ReadOptions Prepare(string path, ColumnMapping mapping, ReadOptions? options)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(mapping);
        options ??= ReadOptions.Strict;
        options.Validate();
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Dataset file '{path}' does not exist.", path);
        }

        return options;
    }

    private DatasetReadResult Finish(DatasetReadResult result)
    {
        if (result.SkippedCount > 0)
        {
            _logger.LogWarning("Dataset {Summary}", result.Describe());
        }
        else
        {
            _logger.LogDebug("Dataset {Summary}", result.Describe());
        }

        return result;
    }
}
