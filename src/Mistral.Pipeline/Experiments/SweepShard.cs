using System.Globalization;

namespace Mistral.Pipeline.Experiments;

/// <summary>
/// One of <see cref="Count"/> processes sharing a sweep: it runs the runs whose index modulo <see cref="Count"/> is
/// <see cref="Index"/> (<c>--shard i/n</c>). Shards write to one results folder; aggregation reads whatever has finished.
/// </summary>
public readonly record struct SweepShard
{
    /// <summary>Creates a shard.</summary>
    /// <param name="index">This process's shard, 0 ≤ index &lt; count.</param>
    /// <param name="count">How many shards share the sweep (at least 1).</param>
    /// <exception cref="ArgumentOutOfRangeException">The count is below 1 or the index outside [0, count).</exception>
    public SweepShard(int index, int count)
    {
        if (count < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"SweepShard count must be at least 1; got {count}.");
        }

        if (index < 0 || index >= count)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"SweepShard index must be in [0, {count}); got {index}.");
        }

        Index = index;
        Count = count;
    }

    /// <summary>This shard, from 0.</summary>
    public int Index { get; }

    /// <summary>How many shards there are.</summary>
    public int Count { get; }

    /// <summary>The whole sweep in one process (0/1).</summary>
    public static SweepShard All { get; } = new(0, 1);

    /// <summary>Whether this shard runs the run at <paramref name="runIndex"/>.</summary>
    /// <param name="runIndex">The run's index in the sweep.</param>
    /// <returns>True when <c>runIndex % Count == Index</c>.</returns>
    public bool Includes(int runIndex) => Count <= 1 || runIndex % Count == Index;

    /// <summary>Parses <c>i/n</c> (e.g. <c>0/2</c>).</summary>
    /// <param name="text">The text.</param>
    /// <returns>The shard.</returns>
    /// <exception cref="FormatException">The text is not two integers separated by '/', or they are out of range (the message names it).</exception>
    public static SweepShard Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split('/');
        if (parts.Length != 2
            || !int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int index)
            || !int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int count))
        {
            throw new FormatException($"--shard '{text}': expected i/n, e.g. 0/2 (shard i of n, counting from 0).");
        }

        if (count < 1 || index >= count)
        {
            throw new FormatException($"--shard '{text}': the shard index must be below the count (0/{Math.Max(count, 1)} … {Math.Max(count, 1) - 1}/{Math.Max(count, 1)}).");
        }

        return new SweepShard(index, count);
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Index}/{Count}");
}
