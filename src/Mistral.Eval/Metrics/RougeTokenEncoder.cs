namespace Mistral.Eval.Metrics;

/// <summary>
/// Turns text into ROUGE tokens as rouge_score 0.1.2's default tokenizer does, and gives each
/// distinct (stemmed) token a small integer id so that scoring compares integers. Stems are cached
/// per distinct raw token. Not thread-safe: owners serialize access.
/// </summary>
internal sealed class RougeTokenEncoder
{
    private const int Dropped = -1;

    private readonly PorterStemmer? _stemmer;
    private readonly Dictionary<string, int> _rawToId = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _rawLookup;
    private readonly Dictionary<string, int> _tokenToId = new(StringComparer.Ordinal);
    private readonly List<string> _idToToken = [];
    private char[] _buffer = new char[64];

    public RougeTokenEncoder(bool useStemmer)
    {
        _stemmer = useStemmer ? new PorterStemmer() : null;
        _rawLookup = _rawToId.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>The token text of an id.</summary>
    public string TokenOf(int id) => _idToToken[id];

    /// <summary>
    /// Appends the token ids of <paramref name="text"/> to <paramref name="output"/>. Python's
    /// <c>lower()</c> is applied first: only A–Z, U+212A (Kelvin sign → "k") and U+0130 ("İ" →
    /// "i" + U+0307, the combining dot being a separator) lowercase into [a-z0-9]; every run of other
    /// characters separates tokens.
    /// </summary>
    public void Encode(ReadOnlySpan<char> text, List<int> output)
    {
        int length = 0;
        foreach (char raw in text)
        {
            char c = raw;
            if (c is >= 'A' and <= 'Z')
            {
                c = (char)(c + ('a' - 'A'));
            }
            else if (c == '\u212A')
            {
                c = 'k';
            }

            if (c is (>= 'a' and <= 'z') or (>= '0' and <= '9'))
            {
                Append(ref length, c);
            }
            else if (c == '\u0130')
            {
                Append(ref length, 'i');
                Flush(ref length, output);
            }
            else
            {
                Flush(ref length, output);
            }
        }

        Flush(ref length, output);
    }

    private void Append(ref int length, char c)
    {
        if (length == _buffer.Length)
        {
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }

        _buffer[length++] = c;
    }

    private void Flush(ref int length, List<int> output)
    {
        if (length == 0)
        {
            return;
        }

        ReadOnlySpan<char> token = _buffer.AsSpan(0, length);
        length = 0;
        if (!_rawLookup.TryGetValue(token, out int id))
        {
            string rawToken = token.ToString();
            // rouge_score stems only tokens longer than 3 characters, then keeps only tokens that
            // still match ^[a-z0-9]+$.
            string final = _stemmer is not null && rawToken.Length > 3 ? _stemmer.Stem(rawToken) : rawToken;
            id = IsValid(final) ? IdOf(final) : Dropped;
            _rawToId.Add(rawToken, id);
        }

        if (id != Dropped)
        {
            output.Add(id);
        }
    }

    private int IdOf(string token)
    {
        if (!_tokenToId.TryGetValue(token, out int id))
        {
            id = _idToToken.Count;
            _idToToken.Add(token);
            _tokenToId.Add(token, id);
        }

        return id;
    }

    private static bool IsValid(string token)
    {
        if (token.Length == 0)
        {
            return false;
        }

        foreach (char c in token)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9')))
            {
                return false;
            }
        }

        return true;
    }
}
