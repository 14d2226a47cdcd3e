namespace Mistral.Eval.Metrics;

/// <summary>
/// rouge_score 0.1.2's default tokenizer: lowercase (as Python's <c>str.lower()</c>), every run of
/// characters outside [a-z0-9] separates tokens, and with stemming each token longer than three
/// characters is replaced by its <see cref="PorterStemmer"/> stem (cached). Thread-safe.
/// </summary>
public sealed class RougeTokenizer
{
    private readonly RougeTokenEncoder _encoder;
    private readonly Lock _gate = new();

    /// <summary>Creates a tokenizer.</summary>
    /// <param name="useStemmer">Whether tokens longer than three characters are Porter-stemmed.</param>
    public RougeTokenizer(bool useStemmer)
    {
        UseStemmer = useStemmer;
        _encoder = new RougeTokenEncoder(useStemmer);
    }

    /// <summary>Whether tokens longer than three characters are Porter-stemmed.</summary>
    public bool UseStemmer { get; }

    /// <summary>Splits <paramref name="text"/> into ROUGE tokens.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The tokens in order.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public IReadOnlyList<string> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        lock (_gate)
        {
            _encoder.Encode(text, ids);
            var tokens = new string[ids.Count];
            for (int i = 0; i < tokens.Length; i++)
            {
                tokens[i] = _encoder.TokenOf(ids[i]);
            }

            return tokens;
        }
    }
}
