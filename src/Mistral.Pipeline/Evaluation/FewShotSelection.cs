namespace Mistral.Pipeline;

/// <summary>How few-shot examples are chosen from the pool.</summary>
public enum FewShotSelection
{
    /// <summary>For each label (first-appearance order), the first pool example with it, up to k labels; the study's classification rule. Tasks without labels use <see cref="FirstK"/>.</summary>
    FirstPerLabel,

    /// <summary>The first k pool examples; the study's summarization rule (k = 2).</summary>
    FirstK,

    /// <summary>k pool examples drawn with a seed.</summary>
    RandomK,
}
