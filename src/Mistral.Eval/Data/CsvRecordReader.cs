using System.Text;

namespace Mistral.Eval.Data;

/// <summary>One CSV record: its fields, the line it starts on, and a syntax error if it is malformed.</summary>
internal sealed record CsvRecord(IReadOnlyList<string> Fields, long Line, string? Error)
{
    public bool IsBlank => Error is null && Fields.Count == 1 && Fields[0].Length == 0;
}

/// <summary>
/// Reads RFC 4180 records: fields separated by the delimiter, records by CRLF, LF or CR; a field that starts
/// with a double quote may contain delimiters, line breaks and doubled quotes (<c>""</c>). A quote inside an
/// unquoted field is kept as text (as Python's csv module does). A closing quote followed by anything but a
/// delimiter or line end, or a quoted field never closed, makes the record malformed (reported, not guessed at).
/// Characters come one physical line at a time from a <see cref="Utf8LineReader"/> (so invalid UTF-8 is found on
/// its exact line, <see cref="PhysicalLine"/>, inside the record that starts on <see cref="RecordStartLine"/>);
/// a line's break is always complete in the characters given, so a CR never needs the next line to be read.
/// </summary>
internal sealed class CsvRecordReader
{
    private readonly Utf8LineReader _lines;
    private readonly char _delimiter;
    private char[] _buffer = [];
    private int _length;
    private int _pos;
    private bool _eof;
    private long _line = 1;
    private long _recordBytes;

    public CsvRecordReader(Utf8LineReader lines, char delimiter)
    {
        _lines = lines;
        _delimiter = delimiter;
    }

    /// <summary>The 1-based line on which the record being read (or last read) starts.</summary>
    public long RecordStartLine { get; private set; }

    /// <summary>The 1-based physical line last read from the file (the one that failed to decode, after an error).</summary>
    public long PhysicalLine => _lines.LineNumber;

    /// <summary>Describes invalid UTF-8 found on <see cref="PhysicalLine"/>, naming the record's first line when it differs.</summary>
    public string DescribeInvalidUtf8(DecoderFallbackException e) =>
        _lines.Describe(e, RecordStartLine != PhysicalLine ? $", in the record that starts on line {RecordStartLine}" : string.Empty);

    private enum State
    {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
        SkipToLineEnd,
    }

    public async ValueTask<CsvRecord?> ReadAsync(CancellationToken ct)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        long start = _line;
        RecordStartLine = start;
        _recordBytes = 0;
        long quoteLine = _line;
        string? error = null;
        bool any = false;
        var state = State.FieldStart;
        while (true)
        {
            if (!await FillAsync(ct).ConfigureAwait(false))
            {
                if (!any)
                {
                    return null;
                }

                if (state == State.Quoted)
                {
                    error ??= $"the quoted field that starts on line {quoteLine} is never closed (reached the end of the file)";
                }

                fields.Add(field.ToString());
                return new CsvRecord(fields, start, error);
            }

            char c = _buffer[_pos++];
            any = true;

            // Outside a quoted field a line break ends the record and the delimiter ends the field
            // (the delimiter is never a quote or a line break: ReadOptions rejects those).
            if (state != State.Quoted && (c is '\n' or '\r'))
            {
                EndLine(c);
                fields.Add(field.ToString());
                return new CsvRecord(fields, start, error);
            }

            if (c == _delimiter && state is State.FieldStart or State.Unquoted or State.QuoteInQuoted)
            {
                fields.Add(field.ToString());
                field.Clear();
                state = State.FieldStart;
                continue;
            }

            switch (state)
            {
                case State.FieldStart when c == '"':
                    state = State.Quoted;
                    quoteLine = _line;
                    break;
                case State.FieldStart:
                case State.Unquoted:
                    field.Append(c);
                    state = State.Unquoted;
                    break;
                case State.Quoted:
                    if (c == '"')
                    {
                        state = State.QuoteInQuoted;
                    }
                    else
                    {
                        if (c == '\n' || (c == '\r' && !PeekIs('\n')))
                        {
                            _line++;
                        }

                        field.Append(c);
                    }

                    break;
                case State.QuoteInQuoted:
                    if (c == '"')
                    {
                        field.Append('"');
                        state = State.Quoted;
                    }
                    else
                    {
                        error = $"unexpected character '{c}' after the closing quote of field {fields.Count + 1} on line {_line} (a quote inside a quoted field must be doubled)";
                        state = State.SkipToLineEnd;
                    }

                    break;
                case State.SkipToLineEnd:
                    break; // the rest of a malformed record, up to the line break handled above
            }
        }
    }

    private void EndLine(char c)
    {
        if (c == '\r' && PeekIs('\n'))
        {
            _pos++;
        }

        _line++;
    }

    // Within the current line only: a CRLF is never split across two lines' characters.
    private bool PeekIs(char expected) => _pos < _length && _buffer[_pos] == expected;

    private async ValueTask<bool> FillAsync(CancellationToken ct)
    {
        if (_pos < _length)
        {
            return true;
        }

        if (_eof)
        {
            return false;
        }

        _pos = 0;
        do
        {
            if (!await _lines.ReadLineAsync(ct).ConfigureAwait(false))
            {
                _length = 0;
                _eof = true;
                return false;
            }

            _buffer = _lines.Chars;
            _length = _lines.Length; // 0 only for a last line that is nothing but a byte order mark

            // A record may span lines (quoted line breaks); its lines together are held to the line limit too.
            _recordBytes += _lines.ByteLength;
            if (_recordBytes > _lines.MaxLineBytes && _lines.LineNumber != RecordStartLine)
            {
                throw new LineTooLongException(_lines.LineNumber, _lines.MaxLineBytes, RecordStartLine);
            }
        }
        while (_length == 0);

        return true;
    }
}
