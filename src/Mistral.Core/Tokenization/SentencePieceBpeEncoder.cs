using System.Text;

namespace Mistral.Core.Tokenization;

/// <summary>
/// SentencePiece's BPE segmentation (<c>bpe_model.cc</c>) over an already normalized string: start from
/// characters (user-defined pieces kept whole), repeatedly merge the adjacent pair whose merged piece has the
/// highest score — on equal scores the leftmost pair — then re-split unused pieces and turn unknown pieces into
/// UTF-8 byte pieces when byte fallback is on.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers 2.0.1 breaks equal-score ties by taking the rightmost pair, which changes the ids
/// of runs such as "aaaaaaaa", "!!!???" or long space runs; this class is why <see cref="MistralTokenizer"/>
/// matches the SentencePiece library on them.
/// </remarks>
internal sealed class SentencePieceBpeEncoder
{
    private readonly SentencePieceModel _model;
    private readonly Dictionary<string, int> _mergeable;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly string[] _userDefined;
    private readonly int[] _byteIds = new int[256];

    public SentencePieceBpeEncoder(SentencePieceModel model)
    {
        _model = model;
        _mergeable = new Dictionary<string, int>(model.Pieces.Length, StringComparer.Ordinal);
        var userDefined = new List<string>();
        for (int i = 0; i < model.Pieces.Length; i++)
        {
            SentencePieceType type = model.Types[i];
            if (type is SentencePieceType.Normal or SentencePieceType.UserDefined or SentencePieceType.Unused)
            {
                _mergeable[model.Pieces[i]] = i;
            }

            if (type == SentencePieceType.UserDefined)
            {
                userDefined.Add(model.Pieces[i]);
            }

            if (type == SentencePieceType.Byte && TryParseBytePiece(model.Pieces[i], out byte b))
            {
                _byteIds[b] = i;
            }
        }

        _lookup = _mergeable.GetAlternateLookup<ReadOnlySpan<char>>();
        _userDefined = userDefined.OrderByDescending(p => p.Length).ToArray();
    }

    /// <summary>Parses a byte piece name <c>&lt;0xXX&gt;</c>.</summary>
    public static bool TryParseBytePiece(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    /// <summary>Appends the ids of <paramref name="normalized"/> to <paramref name="output"/>.</summary>
    public void Encode(string normalized, List<int> output)
    {
        if (normalized.Length == 0)
        {
            return;
        }

        // Initial symbols: one per code point, or a whole user-defined piece.
        var symbols = new List<Symbol>(normalized.Length);
        int pos = 0;
        while (pos < normalized.Length)
        {
            int len = UserDefinedPrefixLength(normalized, pos);
            if (len == 0)
            {
                len = char.IsHighSurrogate(normalized[pos]) && pos + 1 < normalized.Length && char.IsLowSurrogate(normalized[pos + 1]) ? 2 : 1;
            }

            int index = symbols.Count;
            symbols.Add(new Symbol(pos, len, index - 1, pos + len >= normalized.Length ? -1 : index + 1));
            pos += len;
        }

        var agenda = new PriorityQueue<Pair, Pair>(PairPriority.Instance);
        Dictionary<string, (string Left, string Right)>? reverseMerge = null;
        var syms = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(symbols);

        for (int i = 1; i < syms.Length; i++)
        {
            TryAddPair(i - 1, i, syms);
        }

        while (agenda.TryDequeue(out Pair top, out _))
        {
            ref Symbol left = ref syms[top.Left];
            ref Symbol right = ref syms[top.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != top.Length)
            {
                continue; // stale: one side was merged into something else since this pair was queued
            }

            left.Length += right.Length;
            left.Next = right.Next;
            if (right.Next >= 0)
            {
                syms[right.Next].Prev = top.Left;
            }

            right.Length = 0;
            TryAddPair(left.Prev, top.Left, syms);
            TryAddPair(top.Left, left.Next, syms);
        }

        for (int i = 0; i >= 0 && i < syms.Length; i = syms[i].Next)
        {
            Resegment(normalized.AsSpan(syms[i].Start, syms[i].Length), output, reverseMerge);
        }

        void TryAddPair(int left, int right, Span<Symbol> s)
        {
            if (left < 0 || right < 0)
            {
                return;
            }

            int length = s[left].Length + s[right].Length;
            ReadOnlySpan<char> merged = normalized.AsSpan(s[left].Start, length);
            if (!_lookup.TryGetValue(merged, out int id))
            {
                return;
            }

            agenda.Enqueue(new Pair(left, right, length, _model.Scores[id]), new Pair(left, right, length, _model.Scores[id]));
            if (_model.Types[id] == SentencePieceType.Unused)
            {
                reverseMerge ??= new Dictionary<string, (string, string)>(StringComparer.Ordinal);
                reverseMerge[merged.ToString()] = (
                    normalized.Substring(s[left].Start, s[left].Length),
                    normalized.Substring(s[right].Start, s[right].Length));
            }
        }
    }

    private void Resegment(ReadOnlySpan<char> piece, List<int> output, Dictionary<string, (string Left, string Right)>? reverseMerge)
    {
        if (_lookup.TryGetValue(piece, out int id))
        {
            if (_model.Types[id] == SentencePieceType.Unused && reverseMerge is not null
                && reverseMerge.TryGetValue(piece.ToString(), out (string Left, string Right) parts))
            {
                Resegment(parts.Left, output, reverseMerge);
                Resegment(parts.Right, output, reverseMerge);
                return;
            }

            output.Add(id);
            return;
        }

        if (!_model.ByteFallback)
        {
            output.Add(_model.UnknownId);
            return;
        }

        Span<byte> bytes = stackalloc byte[Encoding.UTF8.GetMaxByteCount(piece.Length)];
        int count = Encoding.UTF8.GetBytes(piece, bytes);
        foreach (byte b in bytes[..count])
        {
            output.Add(_byteIds[b]);
        }
    }

    private int UserDefinedPrefixLength(string text, int pos)
    {
        foreach (string piece in _userDefined)
        {
            if (pos + piece.Length <= text.Length && string.CompareOrdinal(text, pos, piece, 0, piece.Length) == 0)
            {
                return piece.Length;
            }
        }

        return 0;
    }

    private struct Symbol(int start, int length, int prev, int next)
    {
        public int Start = start;
        public int Length = length;
        public int Prev = prev;
        public int Next = next;
    }

    private readonly record struct Pair(int Left, int Right, int Length, float Score);

    /// <summary>Higher score first; on equal scores the smaller left index (leftmost pair) first, as SentencePiece.</summary>
    private sealed class PairPriority : IComparer<Pair>
    {
        public static readonly PairPriority Instance = new();

        public int Compare(Pair x, Pair y)
        {
            int c = y.Score.CompareTo(x.Score);
            return c != 0 ? c : x.Left.CompareTo(y.Left);
        }
    }
}
