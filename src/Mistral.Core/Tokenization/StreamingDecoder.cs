using System.Text;

namespace Mistral.Core.Tokenization;

/// <summary>
/// Turns token ids into text one id at a time, for streaming generation. The text returned by successive
/// <see cref="Append(int)"/> calls followed by <see cref="Flush"/> is exactly
/// <see cref="MistralTokenizer.Decode(IEnumerable{int}, bool)"/> of all the ids: the dummy-prefix space of the
/// first piece is dropped, and byte-fallback pieces (<c>&lt;0xE4&gt;&lt;0xB8&gt;&lt;0xAD&gt;</c>) are held back
/// until they form a whole UTF-8 character, so no half character is ever emitted. Bytes that can never form a
/// valid character become U+FFFD, one per byte, as SentencePiece does.
/// </summary>
/// <remarks>Create one with <see cref="MistralTokenizer.CreateStreamingDecoder(bool)"/>. Not thread-safe.</remarks>
public sealed class StreamingDecoder
{
    private const char MetaSpace = '\u2581';
    private readonly SentencePieceModel _model;
    private readonly byte[] _pending = new byte[4];
    private readonly StringBuilder _scratch = new();
    private int _pendingCount;
    private bool _atStart = true;

    internal StreamingDecoder(SentencePieceModel model, bool skipSpecialTokens)
    {
        _model = model;
        SkipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Whether control tokens (<c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>) are left out of the text.</summary>
    public bool SkipSpecialTokens { get; }

    /// <summary>Whether byte pieces of an unfinished UTF-8 character are being held back.</summary>
    public bool HasPendingBytes => _pendingCount > 0;

    /// <summary>Adds one id and returns the text it completes (possibly empty).</summary>
    /// <param name="id">A token id in [0, vocabulary size).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is outside the vocabulary.</exception>
    public string Append(int id)
    {
        _scratch.Clear();
        AppendTo(id, _scratch);
        return _scratch.ToString();
    }

    /// <summary>
    /// Ends the sequence: returns the text of any held-back bytes (U+FFFD, one per byte, since they never formed
    /// a character). Call <see cref="Reset"/> before decoding an unrelated sequence.
    /// </summary>
    public string Flush()
    {
        _scratch.Clear();
        FlushTo(_scratch);
        return _scratch.ToString();
    }

    /// <summary>Forgets held-back bytes and the first-piece state, to decode a new sequence.</summary>
    public void Reset()
    {
        _pendingCount = 0;
        _atStart = true;
    }

    internal void FlushTo(StringBuilder output)
    {
        DrainBytes(output, final: true);
    }

    internal void AppendTo(int id, StringBuilder output)
    {
        if ((uint)id >= (uint)_model.Pieces.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside the vocabulary of {_model.Pieces.Length} pieces.");
        }

        SentencePieceType type = _model.Types[id];
        if (type == SentencePieceType.Byte && SentencePieceBpeEncoder.TryParseBytePiece(_model.Pieces[id], out byte b))
        {
            _pending[_pendingCount++] = b;
            _atStart = false;
            DrainBytes(output, final: false);
            return;
        }

        DrainBytes(output, final: true);
        switch (type)
        {
            case SentencePieceType.Control:
                if (!SkipSpecialTokens)
                {
                    output.Append(_model.Pieces[id]);
                }

                return; // invisible to the first-piece rule, as in SentencePiece
            case SentencePieceType.Unknown:
                output.Append(SkipSpecialTokens ? _model.UnknownSurface : _model.Pieces[id]);
                _atStart = false;
                return;
            default:
                ReadOnlySpan<char> piece = _model.Pieces[id];
                if (_atStart && (_model.AddDummyPrefix || _model.RemoveExtraWhitespaces) && piece.Length > 0 && piece[0] == MetaSpace)
                {
                    piece = piece[1..];
                }

                _atStart = false;
                foreach (char c in piece)
                {
                    output.Append(c == MetaSpace ? ' ' : c);
                }

                return;
        }
    }

    /// <summary>
    /// Emits every held byte whose fate is known: whole valid UTF-8 characters as text, bytes that cannot start
    /// or continue a valid character as U+FFFD. When <paramref name="final"/> is set, unfinished characters
    /// also become U+FFFD (one per byte); otherwise they wait for more bytes.
    /// </summary>
    private void DrainBytes(StringBuilder output, bool final)
    {
        while (_pendingCount > 0)
        {
            byte lead = _pending[0];
            int need = lead switch
            {
                < 0x80 => 1,
                >= 0xC2 and <= 0xDF => 2,
                >= 0xE0 and <= 0xEF => 3,
                >= 0xF0 and <= 0xF4 => 4,
                _ => 0,
            };

            if (need == 0)
            {
                output.Append('\uFFFD');
                Consume(1);
                continue;
            }

            bool broken = false;
            for (int i = 1; i < Math.Min(need, _pendingCount); i++)
            {
                byte c = _pending[i];
                bool ok = i == 1 ? IsValidSecondByte(lead, c) : c is >= 0x80 and <= 0xBF;
                if (!ok)
                {
                    broken = true;
                    break;
                }
            }

            if (broken || (_pendingCount < need && final))
            {
                output.Append('\uFFFD');
                Consume(1);
                continue;
            }

            if (_pendingCount < need)
            {
                return; // wait for the rest of the character
            }

            int codePoint = need switch
            {
                1 => lead,
                2 => ((lead & 0x1F) << 6) | (_pending[1] & 0x3F),
                3 => ((lead & 0x0F) << 12) | ((_pending[1] & 0x3F) << 6) | (_pending[2] & 0x3F),
                _ => ((lead & 0x07) << 18) | ((_pending[1] & 0x3F) << 12) | ((_pending[2] & 0x3F) << 6) | (_pending[3] & 0x3F),
            };
            output.Append(char.ConvertFromUtf32(codePoint));
            Consume(need);
        }
    }

    private static bool IsValidSecondByte(byte lead, byte second) => lead switch
    {
        0xE0 => second is >= 0xA0 and <= 0xBF,
        0xED => second is >= 0x80 and <= 0x9F,
        0xF0 => second is >= 0x90 and <= 0xBF,
        0xF4 => second is >= 0x80 and <= 0x8F,
        _ => second is >= 0x80 and <= 0xBF,
    };

    private void Consume(int count)
    {
        for (int i = count; i < _pendingCount; i++)
        {
            _pending[i - count] = _pending[i];
        }

        _pendingCount -= count;
    }
}
