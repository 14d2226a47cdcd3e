using System.Text;

namespace Mistral.Eval.Parsing;

/// <summary>Finds which of a fixed set of class labels a model generated (see <see cref="LabelParseMode"/>).</summary>
public sealed class LabelParser
{
    private readonly string[] _labels;
    private readonly HashSet<string> _exact;
    private readonly Dictionary<string, string> _byNormalized;
    private readonly (string Label, string Normalized)[] _normalizedLongestFirst;

    /// <summary>Creates a parser for <paramref name="labels"/>.</summary>
    /// <param name="labels">The class labels (duplicates ignored; order breaks ties in <see cref="LabelParseMode.Closest"/>).</param>
    /// <param name="options">Options; defaults when null.</param>
    /// <exception cref="ArgumentException">No labels, an empty label, or two labels that normalize to the same text (named).</exception>
    public LabelParser(IEnumerable<string> labels, LabelParserOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(labels);
        Options = options ?? new LabelParserOptions();
        _labels = labels.Distinct(StringComparer.Ordinal).ToArray();
        if (_labels.Length == 0)
        {
            throw new ArgumentException("At least one label is needed.", nameof(labels));
        }

        _exact = new HashSet<string>(_labels, StringComparer.Ordinal);
        _byNormalized = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var label in _labels)
        {
            var n = Normalize(label);
            if (n.Length == 0)
            {
                throw new ArgumentException($"Label '{label}' has no letters or digits, so it cannot be matched after normalization.", nameof(labels));
            }

            if (!_byNormalized.TryAdd(n, label))
            {
                throw new ArgumentException($"Labels '{_byNormalized[n]}' and '{label}' both normalize to '{n}'.", nameof(labels));
            }
        }

        _normalizedLongestFirst = _byNormalized.Select(kv => (kv.Value, kv.Key)).OrderByDescending(x => x.Key.Length).ToArray();
    }

    /// <summary>The options in use.</summary>
    public LabelParserOptions Options { get; }

    /// <summary>The labels, distinct, in the order given.</summary>
    public IReadOnlyList<string> Labels => _labels;

    /// <summary>The study baseline's cleaning: every <c>'\n'</c> removed, then Python <c>str.strip()</c> whitespace trimmed from both ends.</summary>
    /// <param name="text">The generated text.</param>
    /// <returns>The cleaned text.</returns>
    public static string StudyClean(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var s = text.Replace("\n", string.Empty, StringComparison.Ordinal);
        int start = 0, end = s.Length;
        while (start < end && IsPythonWhitespace(s[start]))
        {
            start++;
        }

        while (end > start && IsPythonWhitespace(s[end - 1]))
        {
            end--;
        }

        return s[start..end];
    }

    /// <summary>
    /// The normalization of <see cref="LabelParseMode.Normalized"/>: the first line with a letter or digit, lowercased
    /// (invariant), each run of other characters replaced by one space, trimmed.
    /// </summary>
    /// <param name="text">The text.</param>
    /// <returns>The normalized text ("" when it has no letters or digits).</returns>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        foreach (var line in text.Split(['\r', '\n']))
        {
            var sb = new StringBuilder(line.Length);
            bool pendingSpace = false;
            foreach (var rune in line.EnumerateRunes())
            {
                if (Rune.IsLetterOrDigit(rune))
                {
                    if (pendingSpace && sb.Length > 0)
                    {
                        sb.Append(' ');
                    }

                    pendingSpace = false;
                    sb.Append(Rune.ToLowerInvariant(rune).ToString());
                }
                else
                {
                    pendingSpace = true;
                }
            }

            if (sb.Length > 0)
            {
                return sb.ToString();
            }
        }

        return string.Empty;
    }

    /// <summary>The Levenshtein distance (insertions, deletions, substitutions of UTF-16 characters, each cost 1).</summary>
    /// <param name="a">One string.</param>
    /// <param name="b">The other.</param>
    /// <returns>The edit distance.</returns>
    public static int EditDistance(string a, string b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
        {
            prev[j] = j;
        }

        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                cur[j] = Math.Min(Math.Min(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + cost);
            }

            (prev, cur) = (cur, prev);
        }

        return prev[b.Length];
    }

    /// <summary>Finds the label in one generated text.</summary>
    /// <param name="generated">The generated continuation (the text after the prompt).</param>
    /// <param name="mode">The rule to apply.</param>
    /// <returns>The label, or an unparseable result with the text to score.</returns>
    public LabelParseResult Parse(string generated, LabelParseMode mode)
    {
        ArgumentNullException.ThrowIfNull(generated);
        switch (mode)
        {
            case LabelParseMode.Exact:
                return _exact.Contains(generated)
                    ? new(generated, generated, LabelMatchKind.Exact, generated)
                    : new(generated, null, LabelMatchKind.None, generated);
            case LabelParseMode.StudyBaseline:
            case LabelParseMode.Normalized:
            case LabelParseMode.Closest:
                var cleaned = StudyClean(generated);
                if (_exact.Contains(cleaned))
                {
                    return new(generated, cleaned, LabelMatchKind.Exact, cleaned);
                }

                if (mode == LabelParseMode.StudyBaseline)
                {
                    return new(generated, null, LabelMatchKind.None, cleaned);
                }

                return ParseNormalized(generated, cleaned, mode);
            default:
                throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown LabelParseMode.");
        }
    }

    /// <summary>Finds the labels in a batch of generated texts.</summary>
    /// <param name="generated">The generated continuations.</param>
    /// <param name="mode">The rule to apply.</param>
    /// <returns>The results and the unparseable count.</returns>
    public LabelParseSummary ParseAll(IEnumerable<string> generated, LabelParseMode mode)
    {
        ArgumentNullException.ThrowIfNull(generated);
        return new LabelParseSummary(mode, generated.Select(g => Parse(g, mode)).ToArray());
    }

    private LabelParseResult ParseNormalized(string generated, string cleaned, LabelParseMode mode)
    {
        var n = Normalize(generated);
        if (n.Length == 0)
        {
            return new(generated, null, LabelMatchKind.None, cleaned);
        }

        if (_byNormalized.TryGetValue(n, out var label))
        {
            return new(generated, label, LabelMatchKind.Normalized, label);
        }

        if (Options.AllowPrefixMatch)
        {
            foreach (var (l, ln) in _normalizedLongestFirst)
            {
                if (n.Length > ln.Length && n.StartsWith(ln, StringComparison.Ordinal) && n[ln.Length] == ' ')
                {
                    return new(generated, l, LabelMatchKind.NormalizedPrefix, l);
                }
            }
        }

        if (mode == LabelParseMode.Closest)
        {
            string? best = null;
            int bestDistance = int.MaxValue;
            int bestLength = 0;
            foreach (var l in _labels)
            {
                var ln = Normalize(l);
                int d = EditDistance(n, ln);
                if (d < bestDistance)
                {
                    best = l;
                    bestDistance = d;
                    bestLength = Math.Max(n.Length, ln.Length);
                }
            }

            if (best is not null && bestDistance <= Options.MaxClosestDistance * bestLength)
            {
                return new(generated, best, LabelMatchKind.Closest, best, bestDistance);
            }
        }

        return new(generated, null, LabelMatchKind.None, cleaned);
    }

    /// <summary>Python's <c>str.isspace()</c> set (C#'s <see cref="char.IsWhiteSpace(char)"/> lacks U+001C–U+001F).</summary>
    private static bool IsPythonWhitespace(char c) => c is '\u001c' or '\u001d' or '\u001e' or '\u001f' || char.IsWhiteSpace(c);
}
