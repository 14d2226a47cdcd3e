namespace Mistral.Eval.Data;

/// <summary>
/// Orders strings by Unicode code point, as Python and NumPy sort <c>str</c> values. (Ordinal UTF-16
/// order differs from it for characters above U+FFFF versus U+E000–U+FFFF.)
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

        var ex = x.EnumerateRunes();
        var ey = y.EnumerateRunes();
        while (true)
        {
            bool hx = ex.MoveNext();
            bool hy = ey.MoveNext();
            if (!hx || !hy)
            {
                return hx == hy ? 0 : (hx ? 1 : -1);
            }

            int c = ex.Current.Value.CompareTo(ey.Current.Value);
            if (c != 0)
            {
                return c;
            }
        }
    }
}
