namespace Mistral.Peft.Quantization;

/// <summary>
/// bitsandbytes' "dynamic" 8-bit quantization map (<c>create_dynamic_map</c>), used for the double quantization of
/// NF4 block scales and stored in checkpoints as <c>nested_quant_map</c>.
/// </summary>
public static class DynamicQuantizationMap
{
    /// <summary>
    /// Derives the map the way <c>create_dynamic_map(signed, max_exponent_bits, total_bits)</c> does: for each
    /// exponent <c>i</c>, the midpoints of a float32 linspace over [0.1, 1] (each point rounded once, filled
    /// symmetrically from both ends as current PyTorch does), scaled by <c>10^(i - (maxExponentBits - 1))</c>
    /// in float32, with their negatives when signed, plus 0 and 1, sorted ascending.
    /// </summary>
    /// <param name="signed">Whether the map covers negative values.</param>
    /// <param name="maxExponentBits">Maximum number of exponent bits (bitsandbytes' default 7).</param>
    /// <param name="totalBits">Total number of bits (8).</param>
    /// <returns>The <c>2^totalBits</c> float32 values, ascending.</returns>
    /// <exception cref="ArgumentOutOfRangeException">For bit counts outside what the algorithm supports.</exception>
    public static float[] Create(bool signed = true, int maxExponentBits = 7, int totalBits = 8)
    {
        if (totalBits is < 2 or > 8)
        {
            throw new ArgumentOutOfRangeException(nameof(totalBits), totalBits, "totalBits must be between 2 and 8.");
        }

        int nonSignBits = totalBits - 1;
        if (maxExponentBits < 1 || maxExponentBits > nonSignBits)
        {
            throw new ArgumentOutOfRangeException(nameof(maxExponentBits), maxExponentBits,
                $"maxExponentBits must be between 1 and totalBits - 1 ({nonSignBits}).");
        }

        var data = new List<float>();
        int additionalItems = (1 << (nonSignBits - maxExponentBits)) - 1;
        int i = 0;
        for (i = 0; i < maxExponentBits; i++)
        {
            int items = signed
                ? (1 << (i + nonSignBits - maxExponentBits)) + 1
                : (1 << (i + nonSignBits - maxExponentBits + 1)) + 1;
            AddMeans(data, items, i, maxExponentBits, signed);
        }

        if (additionalItems > 0)
        {
            AddMeans(data, additionalItems + 1, i - 1, maxExponentBits, signed);
        }

        data.Add(0f);
        data.Add(1f);
        int size = 1 << totalBits;
        if (data.Count > size)
        {
            throw new ArgumentOutOfRangeException(nameof(signed), "The map parameters produce more values than 2^totalBits.");
        }

        while (data.Count < size)
        {
            data.Add(0f);
        }

        data.Sort();
        return [.. data];
    }

    private static void AddMeans(List<float> data, int points, int exponent, int maxExponentBits, bool signed)
    {
        float[] boundaries = Linspace(0.1f, 1.0f, points);
        float scale = (float)Math.Pow(10.0, exponent - (maxExponentBits - 1));
        var means = new float[points - 1];
        for (int k = 0; k < points - 1; k++)
        {
            means[k] = (boundaries[k] + boundaries[k + 1]) / 2.0f;
            means[k] = scale * means[k];
        }

        data.AddRange(means);
        if (signed)
        {
            data.AddRange(means.Select(m => -m));
        }
    }

    /// <summary>float32 linspace with a float32 step, each point rounded once, symmetric halves.</summary>
    private static float[] Linspace(float start, float end, int steps)
    {
        var result = new float[steps];
        if (steps == 1)
        {
            result[0] = start;
            return result;
        }

        float step = (end - start) / (steps - 1);
        int half = steps / 2;
        for (int k = 0; k < steps; k++)
        {
            result[k] = k < half
                ? (float)((double)start + ((double)step * k))
                : (float)((double)end - ((double)step * (steps - 1 - k)));
        }

        return result;
    }
}
