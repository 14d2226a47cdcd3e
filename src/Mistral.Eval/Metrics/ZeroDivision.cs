namespace Mistral.Eval.Metrics;

/// <summary>
/// What a precision or recall with a zero denominator becomes (scikit-learn's <c>zero_division</c>).
/// </summary>
public enum ZeroDivision
{
    /// <summary>0 (scikit-learn's default, which also warns).</summary>
    Zero,

    /// <summary>1.</summary>
    One,

    /// <summary>
    /// NaN, left out of the macro and weighted averages (scikit-learn ≥ 1.3's <c>np.nan</c>; Debian 12's
    /// scikit-learn 1.2.1 does not offer it).
    /// </summary>
    NaN,
}
