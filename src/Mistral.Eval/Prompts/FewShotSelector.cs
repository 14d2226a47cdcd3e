using Mistral.Eval.Data;

namespace Mistral.Eval.Prompts;

/// <summary>
/// Picks few-shot examples from a training set. Labels are <see cref="Example.Target"/>; "label order" is
/// the order of first appearance (the order of <see cref="ClassList"/>). Random strategies use
/// <see cref="NumpyRandomState"/>, so a seed picks the same rows as NumPy/pandas with that seed on every platform.
/// </summary>
public static class FewShotSelector
{
    /// <summary>
    /// The study's classification rule: for each label (in label order) the first example with that label.
    /// </summary>
    /// <param name="examples">The training examples, in dataset order.</param>
    /// <returns>One example per label.</returns>
    public static IReadOnlyList<Example> FirstPerLabel(IReadOnlyList<Example> examples) => PerLabel(examples, 1, seed: null);

    /// <summary>The study's summarization rule (with k = 2): the first <paramref name="k"/> examples.</summary>
    /// <param name="examples">The training examples, in dataset order.</param>
    /// <param name="k">How many to take (all of them when fewer exist).</param>
    /// <returns>The first k examples.</returns>
    public static IReadOnlyList<Example> FirstK(IReadOnlyList<Example> examples, int k)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        return examples.Take(k).ToArray();
    }

    /// <summary>
    /// <paramref name="k"/> distinct examples drawn at random: the rows of NumPy's
    /// <c>RandomState(seed).choice(n, k, replace=False)</c>, i.e. pandas' <c>df.sample(n=k, random_state=seed)</c>, in draw order.
    /// </summary>
    /// <param name="examples">The training examples.</param>
    /// <param name="k">How many to draw (at most the number of examples).</param>
    /// <param name="seed">The seed.</param>
    /// <returns>The drawn examples.</returns>
    public static IReadOnlyList<Example> RandomK(IReadOnlyList<Example> examples, int k, uint seed)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, examples.Count);
        return new NumpyRandomState(seed).Choice(examples.Count, k).Select(i => examples[i]).ToArray();
    }

    /// <summary>
    /// Up to <paramref name="k"/> examples per label, labels in label order. Without a seed, the first k of each
    /// label in dataset order; with a seed, k drawn at random within each label (one random state, labels in order).
    /// A label with fewer than k examples contributes all of them.
    /// </summary>
    /// <param name="examples">The training examples, in dataset order.</param>
    /// <param name="k">Examples per label (at least 1).</param>
    /// <param name="seed">Null for the first k; a seed for a random draw.</param>
    /// <returns>The examples grouped by label.</returns>
    public static IReadOnlyList<Example> PerLabel(IReadOnlyList<Example> examples, int k, uint? seed = null)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        var byLabel = new Dictionary<string, List<Example>>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var e in examples)
        {
            if (!byLabel.TryGetValue(e.Target, out var list))
            {
                byLabel[e.Target] = list = [];
                order.Add(e.Target);
            }

            list.Add(e);
        }

        var rng = seed is { } s ? new NumpyRandomState(s) : null;
        var result = new List<Example>();
        foreach (var label in order)
        {
            var list = byLabel[label];
            int take = Math.Min(k, list.Count);
            if (rng is null)
            {
                result.AddRange(list.Take(take));
            }
            else
            {
                result.AddRange(rng.Choice(list.Count, take).Select(i => list[i]));
            }
        }

        return result;
    }
}
