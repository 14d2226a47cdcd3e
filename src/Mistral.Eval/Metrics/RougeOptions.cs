using System.Text.RegularExpressions;

namespace Mistral.Eval.Metrics;

/// <summary>Options of a <see cref="RougeScorer"/>.</summary>
public sealed partial record RougeOptions
{
    /// <summary>
    /// The ROUGE types to compute: "rouge1" … "rouge9" (n-gram overlap), "rougeL" (LCS over all
    /// tokens) and "rougeLsum" (summary-level union LCS over newline-separated lines).
    /// Default: rouge1, rouge2, rougeL, rougeLsum (what Hugging Face <c>evaluate</c> reports).
    /// </summary>
    public IReadOnlyList<string> RougeTypes { get; init; } = ["rouge1", "rouge2", "rougeL", "rougeLsum"];

    /// <summary>
    /// Whether tokens longer than three characters are Porter-stemmed. rouge_score's default is
    /// false; the study used true.
    /// </summary>
    public bool UseStemmer { get; init; }

    /// <summary>Throws if an option is invalid.</summary>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public void Validate()
    {
        if (RougeTypes is null || RougeTypes.Count == 0)
        {
            throw new ArgumentException(
                $"{nameof(RougeOptions)}.{nameof(RougeTypes)} must name at least one ROUGE type.", nameof(RougeTypes));
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string type in RougeTypes)
        {
            if (type is null || !ValidType().IsMatch(type))
            {
                throw new ArgumentException(
                    $"{nameof(RougeOptions)}.{nameof(RougeTypes)} contains '{type}', which is not a ROUGE type; " +
                    "expected rouge1 … rouge9, rougeL or rougeLsum.", nameof(RougeTypes));
            }

            if (!seen.Add(type))
            {
                throw new ArgumentException(
                    $"{nameof(RougeOptions)}.{nameof(RougeTypes)} lists '{type}' more than once.", nameof(RougeTypes));
            }
        }
    }

    [GeneratedRegex("^(rouge[1-9]|rougeL|rougeLsum)\\z", RegexOptions.CultureInvariant)]
    private static partial Regex ValidType();
}
