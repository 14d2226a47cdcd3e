namespace Mistral.Eval.Data;

/// <summary>
/// A re-implementation of the integer draws of NumPy's legacy <c>numpy.random.RandomState(seed)</c>
/// (MT19937 seeded with <c>init_genrand</c>, bounded integers by masked rejection), so that
/// <see cref="Permutation(int)"/>, <see cref="Shuffle{T}(IList{T})"/> and
/// <see cref="Choice(int, int)"/> return exactly what NumPy returns for the same seed on every
/// platform. NumPy froze this stream (NEP 19), so it does not change between NumPy versions.
/// Not thread-safe: use one instance per operation.
/// </summary>
public sealed class NumpyRandomState
{
    private const int N = 624;
    private const int M = 397;
    private readonly uint[] _mt = new uint[N];
    private int _index;

    /// <summary>Seeds the generator as <c>numpy.random.RandomState(seed)</c> does for an integer seed.</summary>
    /// <param name="seed">The seed, 0 … 2³²−1.</param>
    public NumpyRandomState(uint seed)
    {
        _mt[0] = seed;
        for (int i = 1; i < N; i++)
        {
            _mt[i] = unchecked(1812433253u * (_mt[i - 1] ^ (_mt[i - 1] >> 30)) + (uint)i);
        }

        _index = N;
    }

    /// <summary>The first <paramref name="count"/> words of the MT19937 key after seeding (NumPy's <c>get_state()[1]</c>).</summary>
    /// <param name="count">How many words to return (at most 624).</param>
    /// <returns>A copy of the state words.</returns>
    internal uint[] StateHead(int count) => _mt.AsSpan(0, count).ToArray();

    /// <summary>The next raw 32-bit output of MT19937 (<c>genrand_int32</c>).</summary>
    /// <returns>A uniformly distributed 32-bit value.</returns>
    public uint NextUInt32()
    {
        if (_index >= N)
        {
            Twist();
        }

        uint y = _mt[_index++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        return y;
    }

    /// <summary>
    /// A uniform integer in [0, <paramref name="max"/>] drawn as NumPy's <c>random_interval</c> does:
    /// mask a 32-bit draw to the smallest all-ones mask covering <paramref name="max"/> and reject values above it.
    /// </summary>
    /// <param name="max">The inclusive upper bound (at most 2³²−1).</param>
    /// <returns>The drawn integer.</returns>
    public uint NextInterval(uint max)
    {
        if (max == 0)
        {
            return 0;
        }

        uint mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        uint value;
        while ((value = NextUInt32() & mask) > max)
        {
        }

        return value;
    }

    /// <summary>Shuffles <paramref name="items"/> in place exactly as <c>RandomState.shuffle</c> shuffles a 1-D array.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="items">The list to shuffle.</param>
    public void Shuffle<T>(IList<T> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        for (int i = items.Count - 1; i >= 1; i--)
        {
            int j = (int)NextInterval((uint)i);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>Returns <c>RandomState.permutation(n)</c>: 0 … n−1 shuffled.</summary>
    /// <param name="n">The number of elements (non-negative).</param>
    /// <returns>The permutation.</returns>
    public int[] Permutation(int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        var result = new int[n];
        for (int i = 0; i < n; i++)
        {
            result[i] = i;
        }

        Shuffle(result);
        return result;
    }

    /// <summary>Returns a shuffled copy of <paramref name="items"/>, as <c>RandomState.permutation(array)</c> does.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="items">The items to permute (not modified).</param>
    /// <returns>The shuffled copy.</returns>
    public T[] Permutation<T>(IEnumerable<T> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        var copy = items.ToArray();
        Shuffle(copy);
        return copy;
    }

    /// <summary>
    /// Returns <c>RandomState.choice(n, size, replace=False)</c>: the first <paramref name="size"/> entries
    /// of <c>permutation(n)</c> (also what pandas' <c>DataFrame.sample(n=size, random_state=seed)</c> picks).
    /// </summary>
    /// <param name="n">The population size.</param>
    /// <param name="size">How many distinct indices to draw (≤ <paramref name="n"/>).</param>
    /// <returns>The drawn indices in draw order.</returns>
    public int[] Choice(int n, int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (size > n)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"Cannot take {size} distinct samples from a population of {n}.");
        }

        return Permutation(n).AsSpan(0, size).ToArray();
    }

    private void Twist()
    {
        const uint upper = 0x80000000u;
        const uint lower = 0x7fffffffu;
        const uint matrixA = 0x9908b0dfu;
        int k;
        uint y;
        for (k = 0; k < N - M; k++)
        {
            y = (_mt[k] & upper) | (_mt[k + 1] & lower);
            _mt[k] = _mt[k + M] ^ (y >> 1) ^ ((y & 1u) * matrixA);
        }

        for (; k < N - 1; k++)
        {
            y = (_mt[k] & upper) | (_mt[k + 1] & lower);
            _mt[k] = _mt[k + (M - N)] ^ (y >> 1) ^ ((y & 1u) * matrixA);
        }

        y = (_mt[N - 1] & upper) | (_mt[0] & lower);
        _mt[N - 1] = _mt[M - 1] ^ (y >> 1) ^ ((y & 1u) * matrixA);
        _index = 0;
    }
}
