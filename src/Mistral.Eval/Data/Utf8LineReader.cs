using System.Globalization;
using System.Text;

namespace Mistral.Eval.Data;

/// <summary>
/// Splits a UTF-8 byte stream into physical lines (ended by LF, CRLF or a lone CR, the breaks
/// <see cref="TextReader.ReadLine()"/> knows) and decodes each line on its own with a throwing decoder, so an
/// invalid byte is reported on exactly the line that holds it. Bytes are read asynchronously in blocks and lines
/// are cut from the buffer; a line longer than a block grows the buffer, up to the line limit: a longer line
/// throws <see cref="LineTooLongException"/> once the limit is passed, so at most about the limit is buffered.
/// A leading UTF-8 byte order mark is skipped. After a <see cref="DecoderFallbackException"/> or
/// <see cref="LineTooLongException"/>, <see cref="LineNumber"/> is the offending line.
/// </summary>
internal sealed class Utf8LineReader
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Stream _stream;
    private readonly int _maxLineBytes;
    private byte[] _bytes;
    private char[] _chars = new char[256];
    private int _start;  // first byte of the next line
    private int _end;    // end of the bytes read so far
    private int _scanned; // bytes after _start already searched for a line break
    private bool _eof;
    private int _bomLength;

    /// <param name="stream">The bytes; read from its current position, not disposed.</param>
    /// <param name="blockSize">Bytes per read (tests use tiny blocks to hit every boundary).</param>
    /// <param name="maxLineBytes">The longest line allowed, in bytes without its line break.</param>
    public Utf8LineReader(Stream stream, int blockSize = 1 << 16, int maxLineBytes = ReadOptions.DefaultMaxLineBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLineBytes, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxLineBytes, Array.MaxLength - 2);
        _stream = stream;
        _maxLineBytes = maxLineBytes;
        _bytes = new byte[blockSize];
    }

    /// <summary>The longest line allowed, in bytes without its line break.</summary>
    public int MaxLineBytes => _maxLineBytes;

    /// <summary>The UTF-8 bytes of the last line, its line break (and a byte order mark) included.</summary>
    public int ByteLength { get; private set; }

    /// <summary>The 1-based number of the line last returned (or being decoded when decoding failed).</summary>
    public long LineNumber { get; private set; }

    /// <summary>The decoded characters of the last line, followed by its line break (if it had one).</summary>
    public char[] Chars => _chars;

    /// <summary>How many of <see cref="Chars"/> belong to the last line, its line break included.</summary>
    public int Length { get; private set; }

    /// <summary>How many of the last <see cref="Length"/> characters are the line break: 0, 1 or 2.</summary>
    public int BreakLength { get; private set; }

    /// <summary>The last line without its line break.</summary>
    public ReadOnlyMemory<char> Content => _chars.AsMemory(0, Length - BreakLength);

    /// <summary>Whether the file began with a UTF-16 or UTF-32 byte order mark (FF FE or FE FF).</summary>
    public bool StartsWithUtf16Bom { get; private set; }

    /// <summary>Reads and decodes the next line.</summary>
    /// <returns>False at the end of the stream.</returns>
    /// <exception cref="DecoderFallbackException">The line is not valid UTF-8; <see cref="LineNumber"/> names it.</exception>
    /// <exception cref="LineTooLongException">The line is longer than <see cref="MaxLineBytes"/>; <see cref="LineNumber"/> names it.</exception>
    public async ValueTask<bool> ReadLineAsync(CancellationToken ct)
    {
        int lineEnd, breakLength;
        while (true)
        {
            int found = _bytes.AsSpan(_start + _scanned, _end - _start - _scanned).IndexOfAny((byte)'\n', (byte)'\r');
            if (found >= 0)
            {
                int at = _start + _scanned + found;
                if (_bytes[at] == '\n')
                {
                    (lineEnd, breakLength) = (at + 1, 1);
                    break;
                }

                if (at + 1 < _end || _eof)
                {
                    breakLength = at + 1 < _end && _bytes[at + 1] == '\n' ? 2 : 1;
                    lineEnd = at + breakLength;
                    break;
                }

                // A CR that ends the buffer: the next block says whether it is CRLF. Rescan from the CR.
                _scanned += found;
            }
            else
            {
                _scanned = _end - _start;
                if (_eof)
                {
                    if (_start == _end)
                    {
                        return false;
                    }

                    (lineEnd, breakLength) = (_end, 0);
                    break;
                }
            }

            if (_scanned > _maxLineBytes)
            {
                throw TooLong();
            }

            await ReadBlockAsync(ct).ConfigureAwait(false);
        }

        if (lineEnd - breakLength - _start > _maxLineBytes)
        {
            throw TooLong();
        }

        LineNumber++;
        ByteLength = lineEnd - _start;
        int from = _start;
        if (LineNumber == 1)
        {
            StartsWithUtf16Bom = lineEnd - from >= 2 && ((_bytes[from] == 0xFF && _bytes[from + 1] == 0xFE) || (_bytes[from] == 0xFE && _bytes[from + 1] == 0xFF));
            if (_bytes.AsSpan(from, lineEnd - from).StartsWith("\uFEFF"u8))
            {
                _bomLength = 3;
                from += 3;
            }
        }
        else
        {
            _bomLength = 0;
        }

        _start = lineEnd;
        _scanned = 0;
        int count = lineEnd - from;
        if (_chars.Length < count)
        {
            _chars = new char[Math.Max(count, _chars.Length * 2)];
        }

        // Each byte becomes at most one UTF-16 unit (4-byte sequences become two units), so count chars suffice.
        Length = Strict.GetChars(_bytes, from, count, _chars, 0);
        BreakLength = breakLength;
        return true;
    }

    /// <summary>
    /// Says which bytes of the current line could not be decoded and where, 1-based from the line's first byte
    /// (a byte order mark on line 1 counts): "cannot decode 0xC3 at byte 5 of the line; the file must be UTF-8 encoded".
    /// </summary>
    /// <param name="e">The exception <see cref="ReadLineAsync"/> threw.</param>
    /// <param name="context">Text placed after the position, e.g. ", in the record that starts on line 3".</param>
    public string Describe(DecoderFallbackException e, string context = "")
    {
        var bytes = e.BytesUnknown is { Length: > 0 } b
            ? string.Join(" ", b.Select(x => "0x" + x.ToString("X2", CultureInfo.InvariantCulture)))
            : "a byte";
        var where = e.Index >= 0 ? $" at byte {e.Index + _bomLength + 1} of the line" : string.Empty;
        var bom = StartsWithUtf16Bom ? " (it starts with a UTF-16 or UTF-32 byte order mark)" : string.Empty;
        return $"cannot decode {bytes}{where}{context}; the file must be UTF-8 encoded{bom}";
    }

    private LineTooLongException TooLong()
    {
        LineNumber++;
        return new LineTooLongException(LineNumber, _maxLineBytes);
    }

    private async ValueTask ReadBlockAsync(CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        if (_start > 0)
        {
            // Move the unfinished line to the front.
            _bytes.AsSpan(_start, _end - _start).CopyTo(_bytes);
            _end -= _start;
            _start = 0;
        }

        if (_end == _bytes.Length)
        {
            // The line so far is at most _maxLineBytes + 1 bytes (a CR may wait for its LF), so this size always
            // leaves room for the byte that proves the line too long.
            Array.Resize(ref _bytes, (int)Math.Min(2L * _bytes.Length, _maxLineBytes + 2L));
        }

        int n = await _stream.ReadAsync(_bytes.AsMemory(_end), ct).ConfigureAwait(false);
        if (n == 0)
        {
            _eof = true;
        }

        _end += n;
    }
}

/// <summary>A line is longer than the <see cref="Utf8LineReader"/>'s limit.</summary>
internal sealed class LineTooLongException : Exception
{
    public LineTooLongException(long line, int maxLineBytes, long? recordStartLine = null)
        : base($"line {line} is longer than {maxLineBytes} bytes")
    {
        Line = line;
        MaxLineBytes = maxLineBytes;
        RecordStartLine = recordStartLine;
    }

    /// <summary>For a CSV record spanning lines whose total passed the limit: the line it starts on.</summary>
    public long? RecordStartLine { get; }

    /// <summary>The 1-based line.</summary>
    public long Line { get; }

    /// <summary>The limit it passed.</summary>
    public int MaxLineBytes { get; }
}
