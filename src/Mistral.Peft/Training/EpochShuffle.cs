namespace Mistral.Peft.Training;

/// <summary>
/// The block order of an epoch: a Fisher–Yates shuffle driven by SplitMix64 seeded from (seed, epoch). Deterministic
/// across platforms and .NET versions (unlike <see cref="System.Random"/>), and independent of batch sizes.
/// </summary>
internal static class EpochShuffle
{
    public static int[] Order(int count, long seed, int epoch, bool shuffle)
    {
        int[] order = new int[count];
        for (int i = 0; i < count; i++)
        {
            order[i] = i;
        }

        if (!shuffle)
        {
            return order;
        }

        ulong state = unchecked((ulong)seed ^ (0x9E3779B97F4A7C15UL * (ulong)(epoch + 1)));
        for (int i = count - 1; i > 0; i--)
        {
            int j = (int)Below(ref state, (ulong)(i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }

        return order;
    }

    /// <summary>An unbiased integer in [0, bound) (rejection sampling).</summary>
    private static ulong Below(ref ulong state, ulong bound)
    {
        ulong limit = ulong.MaxValue - (ulong.MaxValue % bound);
        while (true)
        {
            ulong x = Next(ref state);
            if (x < limit)
            {
                return x % bound;
            }
        }
    }

    private static ulong Next(ref ulong state)
    {
        unchecked
        {
            state += 0x9E3779B97F4A7C15UL;
            ulong z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
