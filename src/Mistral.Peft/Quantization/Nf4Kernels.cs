using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Quantization;

/// <summary>
/// Tensor-op implementations of bitsandbytes' blockwise kernels. Every function runs on the device of its input
/// and returns tensors that belong to the caller's dispose scope.
/// </summary>
internal static class Nf4Kernels
{
    /// <summary>Elements quantized at a time by <see cref="QuantizeNf4"/> (4 Mi: 16 MiB of float32 per temporary).</summary>
    public const long DefaultChunkElements = 4L << 20;

    /// <summary>
    /// NF4 quantization as bitsandbytes' <c>kQuantizeBlockwise</c>/<c>dQuantizeNF4</c>: float32 absmax per block of the
    /// row-major flattened tensor, values scaled by the float32 reciprocal of the absmax, code = number of
    /// thresholds strictly below the scaled value (NaN from an all-zero block → code 0), two codes per byte with the
    /// first element in the high nibble; an odd count is padded with the code of a 0.0 element.
    /// The work runs in chunks of whole blocks (<paramref name="chunkElements"/> rounded down to a multiple of the block
    /// size, at least one block), each in its own dispose scope and written into the preallocated outputs, so the
    /// float32 temporaries never exceed a few chunks whatever the weight's size. Every value depends only on its own
    /// block, so the result is the same bit for bit for any chunk size.
    /// </summary>
    /// <param name="weight">The values, flattened row-major into blocks.</param>
    /// <param name="blockSize">Elements per block.</param>
    /// <param name="chunkElements">Elements quantized at a time (rounded down to whole blocks).</param>
    /// <param name="target">
    /// Device of the outputs and of the work; null means the weight's. When it differs from the weight's device, each chunk
    /// is copied there on its own, so the target never holds more of the weight than one chunk (a host-resident weight
    /// quantized on the GPU leaves no full-size transient in the GPU allocator's cache). Same bits either way.
    /// </param>
    /// <returns>Packed codes uint8 [ceil(n/2), 1] and absmax float32 [ceil(n/blockSize)].</returns>
    public static (Tensor Packed, Tensor Absmax) QuantizeNf4(Tensor weight, int blockSize, long chunkElements = DefaultChunkElements, Device? target = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkElements);
        using var scope = NewDisposeScope();
        var flat = weight.reshape(-1);
        long n = flat.size(0);
        if (n == 0)
        {
            throw new ArgumentException("Cannot quantize an empty tensor.", nameof(weight));
        }

        long nb = (n + blockSize - 1) / blockSize;
        // Whole blocks per chunk; the block size is even (a power of two of at least 32), so every chunk but the
        // last starts and ends on a byte boundary of the packed output.
        long chunk = Math.Max(1, chunkElements / blockSize) * blockSize;
        Device device = target ?? weight.device;
        bool stage = !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(device, weight.device);
        var packed = empty([(n + 1) / 2, 1], ScalarType.Byte, device);
        var absmax = empty([nb], ScalarType.Float32, device);
        using var thresholds = tensor(Nf4Codebook.ThresholdsArray(), device: device);
        for (long start = 0; start < n; start += chunk)
        {
            using var chunkScope = NewDisposeScope();
            long length = Math.Min(chunk, n - start);
            var values = flat.slice(0, start, start + length, 1);
            var (chunkPacked, chunkAbsmax) = QuantizeNf4Chunk(stage ? values.to(device) : values, blockSize, thresholds);
            packed.slice(0, start / 2, (start + length + 1) / 2, 1).copy_(chunkPacked);
            absmax.slice(0, start / blockSize, (start + length + blockSize - 1) / blockSize, 1).copy_(chunkAbsmax);
        }

        return (packed.MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }

    // One chunk (a whole number of blocks, or the tail): the unchunked algorithm on that slice.
    private static (Tensor Packed, Tensor Absmax) QuantizeNf4Chunk(Tensor values, int blockSize, Tensor thresholds)
    {
        var (blocks, n, _) = ToBlocks(values, blockSize);
        var absmax = blocks.abs().amax([1L]);
        var scaled = (blocks * absmax.reciprocal().unsqueeze(1)).reshape(-1);
        long keep = n + (n % 2);
        var kept = scaled.slice(0, 0, keep, 1);
        var codes = searchsorted(thresholds, kept, out_int32: true, right: false).masked_fill(kept.isnan(), 0);
        var pairs = codes.view(-1, 2);
        var packed = (pairs.select(1, 0) * 16 + pairs.select(1, 1)).to(ScalarType.Byte).unsqueeze(1);
        return (packed, absmax);
    }

    /// <summary>
    /// 8-bit blockwise quantization as bitsandbytes' <c>kQuantizeBlockwise</c> with <c>dQuantize</c> over a sorted
    /// 256-value map: nearest code of <c>x * (1/absmax)</c>; an exact midpoint between codes k and k+1 goes to the
    /// even index of the two (a property of the kernel's binary search); NaN → code 0.
    /// </summary>
    /// <returns>Codes uint8 [n] and absmax float32 [ceil(n/blockSize)].</returns>
    public static (Tensor Codes, Tensor Absmax) QuantizeBlockwise8(Tensor values, Tensor code, int blockSize)
    {
        using var scope = NewDisposeScope();
        var (blocks, n, _) = ToBlocks(values, blockSize);
        var absmax = blocks.abs().amax([1L]);
        var scaled = (blocks * absmax.reciprocal().unsqueeze(1)).reshape(-1).slice(0, 0, n, 1);
        var map = code.to(ScalarType.Float32).to(values.device);
        long m = map.size(0);
        var mids = (map.slice(0, 0, m - 1, 1) + map.slice(0, 1, m, 1)) * 0.5f;
        var idx = searchsorted(mids, scaled, out_int32: false, right: false);
        var atMid = mids.index_select(0, idx.clamp_max(m - 2));
        var tie = idx.lt(m - 1).logical_and(scaled.eq(atMid)).logical_and(idx.remainder(2).eq(1));
        idx = where(tie, idx + 1, idx).masked_fill(scaled.isnan(), 0);
        return (idx.to(ScalarType.Byte).MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }

    /// <summary><c>out[k] = map[codes[k]] * absmax[k / blockSize]</c> in float32.</summary>
    public static Tensor DequantizeBlockwise8(Tensor codes, Tensor absmax, Tensor map, int blockSize)
    {
        using var scope = NewDisposeScope();
        long n = codes.numel();
        var values = map.to(ScalarType.Float32).index_select(0, codes.reshape(-1).to(ScalarType.Int64));
        var scaled = ScaleBlocks(values, absmax, n, blockSize);
        return scaled.MoveToOuterDisposeScope();
    }

    /// <summary>Unpacks codes and computes <c>nf4[code] * absmax[block]</c> in float32, flat [n].</summary>
    public static Tensor DequantizeNf4Float32(Tensor packed, Tensor absmax, long n, int blockSize, Tensor? pairCodebook = null)
    {
        using var scope = NewDisposeScope();
        // One lookup per byte into a [256, 2] table of (value of the high nibble, value of the low nibble): the same
        // float32 values as unpacking the two codes, in two memory passes instead of five.
        var table = pairCodebook ?? PairCodebook(packed.device);
        var values = table.index_select(0, packed.reshape(-1).to(ScalarType.Int32)).reshape(-1).slice(0, 0, n, 1);
        return ScaleBlocks(values, absmax.to(ScalarType.Float32), n, blockSize).MoveToOuterDisposeScope();
    }

    /// <summary>The [256, 2] float32 table: row b holds (nf4[b &gt;&gt; 4], nf4[b &amp; 15]).</summary>
    public static Tensor PairCodebook(Device device)
    {
        float[] values = Nf4Codebook.ValuesArray();
        var pairs = new float[512];
        for (int b = 0; b < 256; b++)
        {
            pairs[2 * b] = values[b >> 4];
            pairs[(2 * b) + 1] = values[b & 15];
        }

        return tensor(pairs, [256, 2], ScalarType.Float32, device);
    }

    private static Tensor ScaleBlocks(Tensor values, Tensor absmax, long n, int blockSize)
    {
        long nb = (n + blockSize - 1) / blockSize;
        if (absmax.numel() != nb)
        {
            throw new ArgumentException($"absmax has {absmax.numel()} values but {n} elements in blocks of {blockSize} need {nb}.", nameof(absmax));
        }

        var padded = nb * blockSize == n ? values : nn.functional.pad(values, [0, nb * blockSize - n]);
        return (padded.view(nb, blockSize) * absmax.reshape(nb, 1)).reshape(-1).slice(0, 0, n, 1);
    }

    private static (Tensor Blocks, long N, long BlockCount) ToBlocks(Tensor input, int blockSize)
    {
        var flat = input.reshape(-1).to(ScalarType.Float32);
        long n = flat.size(0);
        if (n == 0)
        {
            throw new ArgumentException("Cannot quantize an empty tensor.", nameof(input));
        }

        long nb = (n + blockSize - 1) / blockSize;
        var padded = nb * blockSize == n ? flat : nn.functional.pad(flat, [0, nb * blockSize - n]);
        return (padded.view(nb, blockSize), n, nb);
    }
}
