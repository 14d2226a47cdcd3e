using System.Globalization;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Quantization;

/// <summary>
/// A weight quantized to NF4 in bitsandbytes' layout: packed uint8 codes <c>[ceil(n/2), 1]</c> (first element in the
/// high nibble), per-block scales (float32, or uint8 + nested scales + 256-value map + offset with double
/// quantization), the original shape and dtype and the block size. Owns its tensors (dispose it), except instances
/// that <see cref="Linear4bit"/> builds over its own buffers.
/// </summary>
public sealed class Nf4Tensor : IDisposable
{
    private bool _ownsTensors;

    // The NF4 pair table on this tensor's device, when the owner keeps it there (Linear4bit does), so that
    // dequantizing does not copy them from the host on every call.
    private readonly Tensor? _codebook;
    private bool _disposed;

    internal Nf4Tensor(
        Tensor packed,
        Tensor absmax,
        Tensor? nestedAbsmax,
        Tensor? nestedQuantMap,
        float nestedOffset,
        long[] shape,
        ScalarType dtype,
        int blockSize,
        int nestedBlockSize,
        bool ownsTensors = true,
        Tensor? codebook = null)
    {
        _codebook = codebook;
        Packed = packed;
        Absmax = absmax;
        NestedAbsmax = nestedAbsmax;
        NestedQuantMap = nestedQuantMap;
        NestedOffset = nestedOffset;
        Shape = shape;
        DType = dtype;
        BlockSize = blockSize;
        NestedBlockSize = nestedBlockSize;
        _ownsTensors = ownsTensors;
    }

    /// <summary>Packed codes, uint8 <c>[ceil(n/2), 1]</c>.</summary>
    public Tensor Packed { get; }

    /// <summary>Block scales: float32 <c>[blocks]</c>, or uint8 <c>[blocks]</c> codes of the dynamic map when <see cref="IsDoubleQuantized"/>.</summary>
    public Tensor Absmax { get; }

    /// <summary>float32 scales of the double quantization <c>[ceil(blocks/NestedBlockSize)]</c>, or null.</summary>
    public Tensor? NestedAbsmax { get; }

    /// <summary>The 256-value float32 map the scale codes index, or null.</summary>
    public Tensor? NestedQuantMap { get; }

    /// <summary>The mean of the float32 scales subtracted before double quantization (0 without it).</summary>
    public float NestedOffset { get; }

    /// <summary>Whether the block scales are double quantized.</summary>
    public bool IsDoubleQuantized => NestedAbsmax is not null;

    /// <summary>The original weight shape.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>The original weight dtype (what <see cref="Dequantize()"/> returns).</summary>
    public ScalarType DType { get; }

    /// <summary>Elements per block.</summary>
    public int BlockSize { get; }

    /// <summary>Scales per block of the double quantization (256 by default).</summary>
    public int NestedBlockSize { get; }

    /// <summary>Number of elements of the original weight.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The device the packed codes live on.</summary>
    public Device Device => Packed.device;

    /// <summary>Bytes held by the quantized tensors (codes, scales, nested scales and map).</summary>
    public long StorageBytes =>
        Packed.numel() + (Absmax.numel() * Absmax.ElementSize) + ((NestedAbsmax?.numel() ?? 0) * 4) + ((NestedQuantMap?.numel() ?? 0) * 4);

    /// <summary>
    /// Quantizes <paramref name="weight"/> (any floating dtype, any device) to NF4 with tensor ops on its device.
    /// </summary>
    /// <param name="weight">The weight; flattened row-major into blocks.</param>
    /// <param name="options">Quantization options (validated); null means the defaults.</param>
    /// <returns>A new owning <see cref="Nf4Tensor"/>.</returns>
    /// <exception cref="ArgumentException">The weight is not a floating tensor or is empty, or an option is invalid.</exception>
    public static Nf4Tensor Quantize(Tensor weight, Nf4Options? options = null) =>
        Quantize(weight, options, Nf4Kernels.DefaultChunkElements);

    /// <summary>
    /// <see cref="Quantize(Tensor, Nf4Options?)"/> with the number of elements quantized at a time (rounded down to whole
    /// blocks) and the result on <paramref name="target"/> (null: the weight's device): a host weight is sent there one
    /// chunk at a time as it is quantized, so the target never holds it whole.
    /// </summary>
    internal static Nf4Tensor Quantize(Tensor weight, Nf4Options? options, long chunkElements, Device? target = null)
    {
        ArgumentNullException.ThrowIfNull(weight);
        options = (options ?? new Nf4Options()).Validate();
        if (!Nf4Options.IsFloatingDtype(weight.dtype))
        {
            throw new ArgumentException($"weight must be BFloat16, Float16 or Float32; got {weight.dtype}.", nameof(weight));
        }

        using (no_grad())
        {
            // Dispose the detached handle at once: it shares the weight's storage, and an undisposed handle would keep a
            // full-precision weight alive until the garbage collector finalizes it.
            Tensor packed, absmax;
            using (Tensor source = weight.detach())
            {
                (packed, absmax) = Nf4Kernels.QuantizeNf4(source, options.BlockSize, chunkElements, target);
            }

            var dtype = options.WeightDtype ?? weight.dtype;
            if (!options.DoubleQuant)
            {
                return new Nf4Tensor(packed, absmax, null, null, 0f, weight.shape, dtype, options.BlockSize, options.NestedBlockSize);
            }

            using var scope = NewDisposeScope();
            var map = tensor(DynamicQuantizationMap.Create(), device: absmax.device);
            var offsetTensor = absmax.mean();
            float offset = offsetTensor.cpu().item<float>();
            var (codes, nestedAbsmax) = Nf4Kernels.QuantizeBlockwise8(absmax - offsetTensor, map, options.NestedBlockSize);
            absmax.Dispose();
            return new Nf4Tensor(
                packed,
                codes.MoveToOuterDisposeScope(),
                nestedAbsmax.MoveToOuterDisposeScope(),
                map.MoveToOuterDisposeScope(),
                offset,
                weight.shape,
                dtype,
                options.BlockSize,
                options.NestedBlockSize);
        }
    }

    /// <summary>The float32 block scales: stored ones, or <c>map[code] * nested_absmax + offset</c> computed in float32.</summary>
    /// <returns>A new float32 tensor <c>[blocks]</c>.</returns>
    public Tensor BlockScales()
    {
        ThrowIfDisposed();
        if (!IsDoubleQuantized)
        {
            return Absmax.to(ScalarType.Float32, copy: true);
        }

        using var scope = NewDisposeScope();
        var scaled = Nf4Kernels.DequantizeBlockwise8(Absmax, NestedAbsmax!, NestedQuantMap!, NestedBlockSize);
        return scaled.add_(NestedOffset).MoveToOuterDisposeScope();
    }

    /// <summary>Dequantizes to the original dtype (<see cref="DType"/>).</summary>
    /// <returns>A new tensor of the original shape on <see cref="Device"/>.</returns>
    public Tensor Dequantize() => Dequantize(DType);

    /// <summary>
    /// Dequantizes as bitsandbytes does: <c>nf4[code] * scale</c> in float32, then one cast (round to nearest even)
    /// to <paramref name="dtype"/>.
    /// </summary>
    /// <param name="dtype">Target dtype (BFloat16, Float16 or Float32).</param>
    /// <returns>A new tensor of the original shape on <see cref="Device"/>.</returns>
    public Tensor Dequantize(ScalarType dtype)
    {
        ThrowIfDisposed();
        if (!Nf4Options.IsFloatingDtype(dtype))
        {
            throw new ArgumentException($"dtype must be BFloat16, Float16 or Float32; got {dtype}.", nameof(dtype));
        }

        return Dequantize(dtype, allowFusedKernel: true);
    }

    /// <summary>Dequantizes; <paramref name="allowFusedKernel"/> false forces the libtorch path (benchmarks compare both).</summary>
    internal Tensor Dequantize(ScalarType dtype, bool allowFusedKernel)
    {
        using var scope = NewDisposeScope();
        using var guard = no_grad();
        if (allowFusedKernel && IsDoubleQuantized && Packed.device.type == DeviceType.CUDA)
        {
            // One kernel from the 8-bit scale codes: no float32 scale tensor, none of BlockScales' small ops.
            Tensor table = _codebook ?? Nf4Kernels.PairCodebook(Packed.device);
            if (Cuda.FusedNf4Dequantizer.TryDequantizeDoubleQuant(this, table, dtype) is Tensor direct)
            {
                return direct.MoveToOuterDisposeScope();
            }
        }

        var scales = BlockScales();
        if (allowFusedKernel && Packed.device.type == DeviceType.CUDA)
        {
            Tensor table = _codebook ?? Nf4Kernels.PairCodebook(Packed.device);
            Tensor? fused = Cuda.FusedNf4Dequantizer.TryDequantize(Packed, scales, table, ElementCount, BlockSize, [.. Shape], dtype);
            if (fused is not null)
            {
                return fused.MoveToOuterDisposeScope();
            }
        }

        var flat = Nf4Kernels.DequantizeNf4Float32(Packed, scales, ElementCount, BlockSize, _codebook);
        return flat.reshape([.. Shape]).to(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The tensors bitsandbytes saves for a quantized Linear <paramref name="prefix"/>: <c>P.weight</c>,
    /// <c>P.weight.absmax</c>, <c>P.weight.quant_map</c>, with double quantization <c>P.weight.nested_absmax</c> and
    /// <c>P.weight.nested_quant_map</c>, and <c>P.weight.quant_state.bitsandbytes__nf4</c> (UTF-8 JSON as
    /// Python's <c>json.dumps</c> writes it). Tensors are CPU copies owned by the caller.
    /// </summary>
    /// <param name="prefix">Module prefix, e.g. <c>model.layers.0.self_attn.q_proj</c> (may be empty).</param>
    /// <returns>Key → tensor.</returns>
    public IReadOnlyDictionary<string, Tensor> ToBitsAndBytesState(string prefix)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(prefix);
        byte[] json = Encoding.UTF8.GetBytes(QuantStateJson());
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            // One new CPU tensor per key (to(CPU, copy: true) copies whatever the device, with no intermediate handle).
            result[BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.Weight)] = Packed.to(CPU, copy: true);
            result[BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.Absmax)] = Absmax.to(CPU, copy: true);
            result[BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.QuantMap)] = tensor(Nf4Codebook.ValuesArray());
            if (IsDoubleQuantized)
            {
                result[BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.NestedAbsmax)] = NestedAbsmax!.to(CPU, copy: true);
                result[BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.NestedQuantMap)] = NestedQuantMap!.to(CPU, copy: true);
            }

            result[BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.QuantState)] = tensor(json, ScalarType.Byte);
            return result;
        }
        catch
        {
            foreach (var t in result.Values)
            {
                t.Dispose();
            }

            throw;
        }
    }

    /// <summary>The JSON text of the non-tensor quant state, byte for byte as bitsandbytes writes it.</summary>
    /// <returns>E.g. <c>{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4096, 4096], ...}</c>.</returns>
    public string QuantStateJson()
    {
        var sb = new StringBuilder();
        sb.Append("{\"quant_type\": \"nf4\", \"blocksize\": ").Append(BlockSize.ToString(CultureInfo.InvariantCulture));
        sb.Append(", \"dtype\": \"").Append(DtypeName(DType)).Append("\", \"shape\": [");
        sb.Append(string.Join(", ", Shape.Select(s => s.ToString(CultureInfo.InvariantCulture)))).Append(']');
        if (IsDoubleQuantized)
        {
            sb.Append(", \"nested_blocksize\": ").Append(NestedBlockSize.ToString(CultureInfo.InvariantCulture));
            sb.Append(", \"nested_dtype\": \"float32\", \"nested_offset\": ").Append(PythonFloatFormat.Format(NestedOffset));
        }

        return sb.Append('}').ToString();
    }

    /// <summary>
    /// Reads the bitsandbytes key set of Linear <paramref name="prefix"/> (see <see cref="ToBitsAndBytesState"/>).
    /// The tensors are copied; the result lives on the device of <c>P.weight</c>.
    /// </summary>
    /// <param name="state">A state dict (e.g. read from safetensors).</param>
    /// <param name="prefix">Module prefix (may be empty).</param>
    /// <returns>A new owning <see cref="Nf4Tensor"/>.</returns>
    /// <exception cref="KeyNotFoundException">A required key is missing; the message names it.</exception>
    /// <exception cref="InvalidDataException">A tensor or the JSON does not have the expected dtype, shape or value; the message names the key.</exception>
    public static Nf4Tensor FromBitsAndBytesState(IReadOnlyDictionary<string, Tensor> state, string prefix) =>
        FromBitsAndBytesState(state, prefix, copy: true);

    /// <summary>
    /// <see cref="FromBitsAndBytesState(IReadOnlyDictionary{string, Tensor}, string)"/>; with <paramref name="copy"/> false the
    /// result's tensors are new handles over the same storage as <paramref name="state"/>'s (when already on the device of
    /// <c>P.weight</c>), so a caller that disposes its state handles afterwards leaves exactly one copy alive.
    /// </summary>
    internal static Nf4Tensor FromBitsAndBytesState(IReadOnlyDictionary<string, Tensor> state, string prefix, bool copy)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(prefix);
        Tensor Get(string suffix)
        {
            string key = BitsAndBytesKeys.Key(prefix, suffix);
            return state.TryGetValue(key, out var t)
                ? t
                : throw new KeyNotFoundException($"bitsandbytes 4-bit state is missing key '{key}'.");
        }

        string stateKey = BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.QuantState);
        var qs = Get(BitsAndBytesKeys.QuantState);
        if (qs.dtype != ScalarType.Byte)
        {
            throw new InvalidDataException($"'{stateKey}' must be uint8 JSON bytes; got {qs.dtype}.");
        }

        string json;
        using (Tensor qsCpu = qs.cpu())
        {
            json = Encoding.UTF8.GetString(qsCpu.data<byte>().ToArray());
        }

        var meta = QuantStateMetadata.Parse(json, stateKey);
        var packed = Get(BitsAndBytesKeys.Weight);
        string weightKey = BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.Weight);
        long n = meta.Shape.Aggregate(1L, (a, b) => a * b);
        if (packed.dtype != ScalarType.Byte || packed.numel() != (n + 1) / 2)
        {
            throw new InvalidDataException($"'{weightKey}' must be uint8 with {(n + 1) / 2} elements for shape [{string.Join(", ", meta.Shape)}]; got {packed.dtype} with {packed.numel()}.");
        }

        var device = packed.device;
        var quantMap = Get(BitsAndBytesKeys.QuantMap);
        string mapKey = BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.QuantMap);
        if (quantMap.numel() != 16 || !Float32Values(quantMap).SequenceEqual(Nf4Codebook.Values))
        {
            throw new InvalidDataException($"'{mapKey}' must hold the 16 NF4 code values.");
        }

        long blocks = (n + meta.BlockSize - 1) / meta.BlockSize;
        var absmax = Get(BitsAndBytesKeys.Absmax);
        string absmaxKey = BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.Absmax);
        if (absmax.numel() != blocks)
        {
            throw new InvalidDataException($"'{absmaxKey}' must have {blocks} elements; got {absmax.numel()}.");
        }

        if (meta.NestedBlockSize is null)
        {
            if (absmax.dtype != ScalarType.Float32)
            {
                throw new InvalidDataException($"'{absmaxKey}' must be float32 without double quantization; got {absmax.dtype}.");
            }

            Tensor? plainPacked = null;
            try
            {
                plainPacked = OnDevice(packed, device, copy, -1, 1);
                return new Nf4Tensor(plainPacked, OnDevice(absmax, device, copy, -1), null, null, 0f, meta.Shape, meta.DType, meta.BlockSize, 256);
            }
            catch
            {
                plainPacked?.Dispose();
                throw;
            }
        }

        if (absmax.dtype != ScalarType.Byte)
        {
            throw new InvalidDataException($"'{absmaxKey}' must be uint8 with double quantization; got {absmax.dtype}.");
        }

        int nestedBlock = meta.NestedBlockSize.Value;
        var nestedAbsmax = Get(BitsAndBytesKeys.NestedAbsmax);
        var nestedMap = Get(BitsAndBytesKeys.NestedQuantMap);
        long nestedBlocks = (blocks + nestedBlock - 1) / nestedBlock;
        if (nestedAbsmax.dtype != ScalarType.Float32 || nestedAbsmax.numel() != nestedBlocks)
        {
            throw new InvalidDataException($"'{BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.NestedAbsmax)}' must be float32 with {nestedBlocks} elements; got {nestedAbsmax.dtype} with {nestedAbsmax.numel()}.");
        }

        if (nestedMap.dtype != ScalarType.Float32 || nestedMap.numel() != 256)
        {
            throw new InvalidDataException($"'{BitsAndBytesKeys.Key(prefix, BitsAndBytesKeys.NestedQuantMap)}' must be float32 with 256 elements; got {nestedMap.dtype} with {nestedMap.numel()}.");
        }

        var made = new List<Tensor>(4);
        try
        {
            made.Add(OnDevice(packed, device, copy, -1, 1));
            made.Add(OnDevice(absmax, device, copy, -1));
            made.Add(OnDevice(nestedAbsmax, device, copy, -1));
            made.Add(OnDevice(nestedMap, device, copy, -1));
            return new Nf4Tensor(made[0], made[1], made[2], made[3], meta.NestedOffset, meta.Shape, meta.DType, meta.BlockSize, nestedBlock);
        }
        catch
        {
            foreach (var t in made)
            {
                t.Dispose();
            }

            throw;
        }
    }

    // One new handle of the given shape on the device: a copy with copy true, else a view of the same storage when the
    // tensor is already there. The intermediate handle of .to() is disposed at once.
    private static Tensor OnDevice(Tensor t, Device device, bool copy, params long[] shape)
    {
        using Tensor moved = t.to(device, copy: copy);
        return moved.reshape(shape);
    }

    private static float[] Float32Values(Tensor t)
    {
        using Tensor cpu = t.cpu();
        using Tensor f32 = cpu.to(ScalarType.Float32);
        return f32.data<float>().ToArray();
    }

    /// <summary>Stops owning the tensors (a <see cref="Linear4bit"/> adopted them): disposing this instance frees nothing.</summary>
    internal void ReleaseOwnership()
    {
        ThrowIfDisposed();
        if (!_ownsTensors)
        {
            throw new InvalidOperationException("This Nf4Tensor does not own its tensors, so they cannot be handed over.");
        }

        _ownsTensors = false;
    }

    /// <summary>
    /// Bytes of the NF4 representation of <paramref name="elementCount"/> weights: packed codes
    /// <c>ceil(n/2)</c>, plus 4 bytes per block scale, or with double quantization 1 byte per scale, 4 bytes per
    /// nested scale and the 1 KiB map (bitsandbytes' layout; the 64-byte quant map and the JSON are not counted).
    /// </summary>
    /// <param name="elementCount">Number of weights.</param>
    /// <param name="options">Options (validated); null means the defaults.</param>
    /// <returns>Storage size in bytes.</returns>
    public static long StorageBytesFor(long elementCount, Nf4Options? options = null)
    {
        options = (options ?? new Nf4Options()).Validate();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(elementCount);
        long blocks = (elementCount + options.BlockSize - 1) / options.BlockSize;
        long packed = (elementCount + 1) / 2;
        if (!options.DoubleQuant)
        {
            return packed + (blocks * 4);
        }

        long nested = (blocks + options.NestedBlockSize - 1) / options.NestedBlockSize;
        return packed + blocks + (nested * 4) + (256 * 4);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_ownsTensors)
        {
            Packed.Dispose();
            Absmax.Dispose();
            NestedAbsmax?.Dispose();
            NestedQuantMap?.Dispose();
        }
    }

    internal static string DtypeName(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float32 => "float32",
        _ => throw new ArgumentException($"Unsupported weight dtype {t}; expected BFloat16, Float16 or Float32."),
    };

    internal static ScalarType ParseDtype(string name, string where) => name switch
    {
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        "float32" => ScalarType.Float32,
        _ => throw new InvalidDataException($"{where}: dtype '{name}' is not one of bfloat16, float16, float32."),
    };

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
