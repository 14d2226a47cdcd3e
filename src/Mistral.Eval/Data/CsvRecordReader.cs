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
/// </summary>
internal sealed class CsvRecordReader
{
    private readonly TextReader _reader;
    private readonly char _delimiter;
    private readonly char[] _buffer = new char[1 << 16];
    private int _length;
    private int _pos;
    private bool _eof;
    private long _line = 1;

    public CsvRecordReader(TextReader reader, char delimiter)
    {
        _reader = reader;
        _delimiter = delimiter;
    }

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
                await EndLineAsync(c, ct).ConfigureAwait(false);
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
                        if (c == '\n' || (c == '\r' && !await PeekIsAsync('\n', ct).ConfigureAwait(false)))
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

    private async ValueTask EndLineAsync(char c, CancellationToken ct)
    {
        if (c == '\r' && await PeekIsAsync('\n', ct).ConfigureAwait(false))
        {
            _pos++;
        }

        _line++;
    }

    private async ValueTask<bool> PeekIsAsync(char expected, CancellationToken ct) =>
        await FillAsync(ct).ConfigureAwait(false) && _buffer[_pos] == expected;

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

        _length = await _reader.ReadAsync(_buffer.AsMemory(), ct).ConfigureAwait(false);
        _pos = 0;
        if (_length == 0)
        {
            _eof = true;
            return false;
        }

        return true;
    }
}
