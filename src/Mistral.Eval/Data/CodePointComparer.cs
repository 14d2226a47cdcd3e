namespace Mistral.Eval.Data;

/// <summary>
/// Orders strings by Unicode code point, as Python and NumPy sort <c>str</c> values. (Ordinal UTF-16
/// order differs from it for characters above U+FFFF versus U+E000–U+FFFF.) Used for the class order of
/// <see cref="DataSplitter"/> and the label order of <see cref="Metrics.ClassificationMetrics"/>.
/// </summary>
public sealed class CodePointComparer : IComparer<string>
{
    /// <summary>The shared instance (the comparer has no state).</summary>
    public static CodePointComparer Instance { get; } = new();

    /// <inheritdoc />
    public int Compare(string? x, string? y)
    {
        if (ReferenceEquals(x, y))
        {
            return 0;
        }

        if (x is null)
        {
            return -1;
        }

        if (y is null)
        {
            return 1;
        }

        int length = Math.Min(x.Length, y.Length);
        for (int i = 0; i < length; i++)
        {
            if (x[i] != y[i])
            {
                return Fix(x[i]).CompareTo(Fix(y[i]));
            }
        }

        return x.Length.CompareTo(y.Length);
    }

    // Moves surrogates above U+E000–U+FFFF so that code-unit order becomes code-point order.
    private static int Fix(char c) => c >= 0xE000 ? c - 0x800 : c >= 0xD800 ? c + 0x2000 : c;
}
