using System.Collections.Frozen;

namespace Mistral.Eval.Metrics;

/// <summary>
/// The Porter stemmer exactly as NLTK's <c>PorterStemmer()</c> computes it in its default
/// <c>NLTK_EXTENSIONS</c> mode (NLTK 3.8): Martin Porter's 1980 algorithm plus the extensions that
/// Martin Porter endorsed and those added by NLTK's contributors (irregular forms such as
/// "dying" → "die", the "ies"/"ied" rules for four-letter words, the "y" → "i" rule only after a
/// consonant that is not the first letter, the "alli", "fulli" and "logi" rules, and the two-letter
/// cvc condition). It is neither the original published algorithm nor the Perl ROUGE-1.5.5 stemmer.
/// </summary>
/// <remarks>
/// The algorithm is defined over lowercase ASCII letters; other characters are treated as
/// consonants, as NLTK does. The instance holds no mutable state and is safe to share between
/// threads. Lowercasing uses <see cref="string.ToLowerInvariant()"/>, which equals Python's
/// <c>str.lower()</c> on ASCII text.
/// </remarks>
public sealed class PorterStemmer
{
    private delegate bool Condition(string word, string stem);

    private readonly record struct Rule(string Suffix, string Replacement, Condition? When);

    private static readonly FrozenDictionary<string, string> IrregularForms = new Dictionary<string, string>
    {
        ["sky"] = "sky",
        ["skies"] = "sky",
        ["dying"] = "die",
        ["lying"] = "lie",
        ["tying"] = "tie",
        ["news"] = "news",
        ["innings"] = "inning",
        ["inning"] = "inning",
        ["outings"] = "outing",
        ["outing"] = "outing",
        ["cannings"] = "canning",
        ["canning"] = "canning",
        ["howe"] = "howe",
        ["proceed"] = "proceed",
        ["exceed"] = "exceed",
        ["succeed"] = "succeed",
    }.ToFrozenDictionary(StringComparer.Ordinal);

    private static readonly Condition PositiveMeasure = (_, stem) => Measure(stem) > 0;
    private static readonly Condition MeasureAboveOne = (_, stem) => Measure(stem) > 1;

    private static readonly Rule[] Step1aRules =
    [
        new("sses", "ss", null),
        new("ies", "i", null),
        new("ss", "ss", null),
        new("s", "", null),
    ];

    private static readonly Rule[] Step2Rules =
    [
        new("ational", "ate", PositiveMeasure),
        new("tional", "tion", PositiveMeasure),
        new("enci", "ence", PositiveMeasure),
        new("anci", "ance", PositiveMeasure),
        new("izer", "ize", PositiveMeasure),
        new("bli", "ble", PositiveMeasure),
        new("alli", "al", PositiveMeasure),
        new("entli", "ent", PositiveMeasure),
        new("eli", "e", PositiveMeasure),
        new("ousli", "ous", PositiveMeasure),
        new("ization", "ize", PositiveMeasure),
        new("ation", "ate", PositiveMeasure),
        new("ator", "ate", PositiveMeasure),
        new("alism", "al", PositiveMeasure),
        new("iveness", "ive", PositiveMeasure),
        new("fulness", "ful", PositiveMeasure),
        new("ousness", "ous", PositiveMeasure),
        new("aliti", "al", PositiveMeasure),
        new("iviti", "ive", PositiveMeasure),
        new("biliti", "ble", PositiveMeasure),
        new("fulli", "ful", PositiveMeasure),
        // NLTK measures the word without "ogi" here, not the stem without "logi".
        new("logi", "log", (word, _) => Measure(word[..^3]) > 0),
    ];

    private static readonly Rule[] Step3Rules =
    [
        new("icate", "ic", PositiveMeasure),
        new("ative", "", PositiveMeasure),
        new("alize", "al", PositiveMeasure),
        new("iciti", "ic", PositiveMeasure),
        new("ical", "ic", PositiveMeasure),
        new("ful", "", PositiveMeasure),
        new("ness", "", PositiveMeasure),
    ];

    private static readonly Rule[] Step4Rules =
    [
        new("al", "", MeasureAboveOne),
        new("ance", "", MeasureAboveOne),
        new("ence", "", MeasureAboveOne),
        new("er", "", MeasureAboveOne),
        new("ic", "", MeasureAboveOne),
        new("able", "", MeasureAboveOne),
        new("ible", "", MeasureAboveOne),
        new("ant", "", MeasureAboveOne),
        new("ement", "", MeasureAboveOne),
        new("ment", "", MeasureAboveOne),
        new("ent", "", MeasureAboveOne),
        new("ion", "", (_, stem) => Measure(stem) > 1 && stem[^1] is 's' or 't'),
        new("ou", "", MeasureAboveOne),
        new("ism", "", MeasureAboveOne),
        new("ate", "", MeasureAboveOne),
        new("iti", "", MeasureAboveOne),
        new("ous", "", MeasureAboveOne),
        new("ive", "", MeasureAboveOne),
        new("ize", "", MeasureAboveOne),
    ];

    private static readonly Rule[] Step5bRules =
    [
        new("ll", "l", (word, _) => Measure(word[..^1]) > 1),
    ];

    /// <summary>Stems one word (lowercased first), as NLTK's <c>PorterStemmer().stem(word)</c> does.</summary>
    /// <param name="word">The word to stem.</param>
    /// <returns>The stem.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="word"/> is null.</exception>
    public string Stem(string word)
    {
        ArgumentNullException.ThrowIfNull(word);
        string stem = word.ToLowerInvariant();
        // NLTK looks the original word up but returns the entry of the lowercased one; the keys are
        // lowercase, so both are the same word whenever the lookup succeeds.
        if (IrregularForms.TryGetValue(word, out string? irregular))
        {
            return irregular;
        }

        if (word.Length <= 2)
        {
            return stem;
        }

        stem = Step1a(stem);
        stem = Step1b(stem);
        stem = ApplyRules(stem, [new Rule("y", "i", (_, s) => s.Length > 1 && IsConsonant(s, s.Length - 1))]);
        stem = Step2(stem);
        stem = ApplyRules(stem, Step3Rules);
        stem = ApplyRules(stem, Step4Rules);
        stem = Step5a(stem);
        stem = ApplyRules(stem, Step5bRules);
        return stem;
    }

    private static string Step1a(string word)
    {
        if (word.Length == 4 && word.EndsWith("ies", StringComparison.Ordinal))
        {
            return word[..^3] + "ie";
        }

        return ApplyRules(word, Step1aRules);
    }

    private static string Step1b(string word)
    {
        if (word.EndsWith("ied", StringComparison.Ordinal))
        {
            return word[..^3] + (word.Length == 4 ? "ie" : "i");
        }

        if (word.EndsWith("eed", StringComparison.Ordinal))
        {
            string stem = word[..^3];
            return Measure(stem) > 0 ? stem + "ee" : word;
        }

        string? intermediate = null;
        foreach (string suffix in (ReadOnlySpan<string>)["ed", "ing"])
        {
            if (word.EndsWith(suffix, StringComparison.Ordinal))
            {
                string candidate = word[..^suffix.Length];
                if (ContainsVowel(candidate))
                {
                    intermediate = candidate;
                    break;
                }
            }
        }

        if (intermediate is null)
        {
            return word;
        }

        char last = intermediate[^1];
        return ApplyRules(intermediate,
        [
            new("at", "ate", null),
            new("bl", "ble", null),
            new("iz", "ize", null),
            new("*d", last.ToString(), (_, _) => last is not ('l' or 's' or 'z')),
            new("", "e", (_, stem) => Measure(stem) == 1 && EndsCvc(stem)),
        ]);
    }

    private static string Step2(string word)
    {
        if (word.EndsWith("alli", StringComparison.Ordinal) && Measure(word[..^4]) > 0)
        {
            return Step2(word[..^4] + "al");
        }

        return ApplyRules(word, Step2Rules);
    }

    private static string Step5a(string word)
    {
        if (word.EndsWith('e'))
        {
            string stem = word[..^1];
            int measure = Measure(stem);
            if (measure > 1 || (measure == 1 && !EndsCvc(stem)))
            {
                return stem;
            }
        }

        return word;
    }

    /// <summary>
    /// Applies the first rule whose suffix the word ends with: its replacement if its condition holds,
    /// otherwise the word unchanged (later rules are not tried). The pseudo-suffix "*d" matches a word
    /// ending in a double consonant and removes both letters before appending the replacement.
    /// </summary>
    private static string ApplyRules(string word, ReadOnlySpan<Rule> rules)
    {
        foreach (Rule rule in rules)
        {
            if (rule.Suffix == "*d" && EndsDoubleConsonant(word))
            {
                string doubled = word[..^2];
                return rule.When is null || rule.When(word, doubled) ? doubled + rule.Replacement : word;
            }

            if (word.EndsWith(rule.Suffix, StringComparison.Ordinal))
            {
                string stem = word[..^rule.Suffix.Length];
                return rule.When is null || rule.When(word, stem) ? stem + rule.Replacement : word;
            }
        }

        return word;
    }

    /// <summary>A letter other than a, e, i, o, u, and other than a y preceded by a consonant.</summary>
    private static bool IsConsonant(string word, int index)
    {
        char c = word[index];
        if (c is 'a' or 'e' or 'i' or 'o' or 'u')
        {
            return false;
        }

        if (c != 'y')
        {
            return true;
        }

        // A run of y's alternates consonant/vowel starting from what precedes it
        // (a y at index 0 is a consonant).
        int start = index;
        while (start > 0 && word[start - 1] == 'y')
        {
            start--;
        }

        bool consonant = start == 0 || !IsConsonant(word, start - 1);
        return (index - start) % 2 == 0 ? consonant : !consonant;
    }

    /// <summary>The number of vowel-consonant transitions, m in [C](VC){m}[V].</summary>
    private static int Measure(string stem)
    {
        int measure = 0;
        bool previousConsonant = true;
        bool previousWasVowel = false;
        for (int i = 0; i < stem.Length; i++)
        {
            char c = stem[i];
            bool consonant = c is 'a' or 'e' or 'i' or 'o' or 'u'
                ? false
                : c != 'y' || i == 0 || !previousConsonant;
            if (consonant && previousWasVowel)
            {
                measure++;
            }

            previousWasVowel = !consonant;
            previousConsonant = consonant;
        }

        return measure;
    }

    private static bool ContainsVowel(string stem)
    {
        for (int i = 0; i < stem.Length; i++)
        {
            if (!IsConsonant(stem, i))
            {
                return true;
            }
        }

        return false;
    }

    private static bool EndsDoubleConsonant(string word) =>
        word.Length >= 2 && word[^1] == word[^2] && IsConsonant(word, word.Length - 1);

    private static bool EndsCvc(string word) =>
        (word.Length >= 3
         && IsConsonant(word, word.Length - 3)
         && !IsConsonant(word, word.Length - 2)
         && IsConsonant(word, word.Length - 1)
         && word[^1] is not ('w' or 'x' or 'y'))
        || (word.Length == 2 && !IsConsonant(word, 0) && IsConsonant(word, 1));
}
