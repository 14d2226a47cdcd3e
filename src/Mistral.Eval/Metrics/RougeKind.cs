namespace Mistral.Eval.Metrics;

/// <summary>The three families of ROUGE types.</summary>
internal enum RougeKind
{
    /// <summary>rouge1 … rouge9.</summary>
    NGram,

    /// <summary>rougeL.</summary>
    Lcs,

    /// <summary>rougeLsum.</summary>
    LcsSummary,
}
