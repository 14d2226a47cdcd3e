using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Quantization;

/// <summary>
/// A frozen Linear layer whose weight is stored in NF4 (bitsandbytes' <c>Linear4bit</c>): the packed codes and
/// scales are buffers (<c>weight</c> = packed codes, <c>weight_absmax</c>, <c>weight_nested_absmax</c>,
/// <c>weight_nested_quant_map</c>, <c>weight_nested_offset</c>), never parameters. The forward casts the input to
/// the compute dtype, computes <c>x @ dequant(W)^T (+ bias)</c> there and casts the result back to the input dtype;
/// the dequantized weight lives only inside the call (the backward dequantizes again). Gradients reach the input,
/// never the weight; the optional bias is a frozen parameter.
/// </summary>
public sealed class Linear4bit : nn.Module<Tensor, Tensor>, Mistral.Core.Modeling.ILinearLayer, Mistral.Core.Modeling.IFusedKernelSwitch,
    Mistral.Core.Modeling.IFusedDecodeProjection
{
    private readonly long[] _shape;
    private readonly ScalarType _weightDtype;
    private readonly int _blockSize;
    private readonly int _nestedBlockSize;
    private readonly bool _doubleQuant;

    // The nested offset as a C# float: reading the buffer back on every call would force a device sync on CUDA.
    // The buffer is kept (and never changed) so the state dict carries it.
    private readonly float _nestedOffset;

    // The NF4 pair table (Nf4Kernels.PairCodebook) on the weight's device, made once per device, so dequantizing never copies them from the host.
    // Deliberately not a buffer: it is a constant, not state.
    private Tensor? _codebook;

    // adoptWeight: the layer takes over weight's tensors as its buffers (no copy) and weight stops owning them; the
    // caller hands over an owning Nf4Tensor it will not use again. Otherwise the tensors are copied.
    private Linear4bit(Nf4Tensor weight, Tensor? bias, ScalarType computeDtype, string name, bool adoptWeight)
        : base(name)
    {
        if (weight.Shape.Count != 2)
        {
            throw new ArgumentException($"A Linear weight must be 2-D [out, in]; got [{string.Join(", ", weight.Shape)}].", nameof(weight));
        }

        if (!Nf4Options.IsFloatingDtype(computeDtype))
        {
            throw new ArgumentException($"computeDtype must be BFloat16, Float16 or Float32; got {computeDtype}.", nameof(computeDtype));
        }

        _shape = [.. weight.Shape];
        _weightDtype = weight.DType;
        _blockSize = weight.BlockSize;
        _nestedBlockSize = weight.NestedBlockSize;
        _doubleQuant = weight.IsDoubleQuantized;
        _nestedOffset = weight.NestedOffset;
        ComputeDtype = computeDtype;
        if (bias is not null && bias.numel() != _shape[0])
        {
            throw new ArgumentException($"bias must have {_shape[0]} elements (out features); got {bias.numel()}.", nameof(bias));
        }

        // Device moves start from the weight's device (TorchSharp's field defaults to CPU, which would turn a later
        // .to(CPU) of a layer built on CUDA into a no-op).
        Device device = weight.Device;
        _deviceType = device.type;
        _deviceIndex = device.type == DeviceType.CUDA ? device.index : -1;
        if (adoptWeight)
        {
            weight.ReleaseOwnership();
        }

        // Every tensor the layer holds is detached from any dispose scope the caller has open: the module owns it, and
        // a layer built inside a scope must not lose its state when that scope ends.
        Tensor Take(Tensor t) => (adoptWeight ? t : Copy(t)).DetachFromDisposeScope();
        register_buffer("weight", Take(weight.Packed));
        register_buffer("weight_absmax", Take(weight.Absmax));
        if (weight.IsDoubleQuantized)
        {
            register_buffer("weight_nested_absmax", Take(weight.NestedAbsmax!));
            register_buffer("weight_nested_quant_map", Take(weight.NestedQuantMap!));
            register_buffer("weight_nested_offset", tensor(weight.NestedOffset, ScalarType.Float32, device).DetachFromDisposeScope());
        }

        if (bias is not null)
        {
            using Tensor flatBias = bias.reshape(-1);
            var parameter = new Parameter(Copy(flatBias), requires_grad: false);
            parameter.DetachFromDisposeScope();
            register_parameter("bias", parameter);
        }
    }

    /// <summary>Input features (weight columns).</summary>
    public long InFeatures => _shape[1];

    /// <summary>Output features (weight rows).</summary>
    public long OutFeatures => _shape[0];

    /// <summary>The dtype the matmul runs in.</summary>
    public ScalarType ComputeDtype { get; }

    /// <summary>
    /// Whether a forward without autograd in eval mode on CUDA with at most 8 rows of bfloat16 input multiplies straight from the 4-bit
    /// codes (a fused GEMV kernel: the weight is read once in 4-bit, nothing is dequantized into memory) instead of
    /// dequantizing the weight and calling a matmul. Same values up to float32 summation order. Default true.
    /// </summary>
    public bool UseFusedKernels { get; set; } = true;

    /// <summary>
    /// Quantizes a Linear module's weight (and copies its bias) into a new <see cref="Linear4bit"/>. The module's
    /// weight is read from <c>TorchSharp.Modules.Linear</c> or from its parameter named <c>weight</c>.
    /// </summary>
    /// <param name="linear">The dense Linear module.</param>
    /// <param name="options">NF4 options (validated); null means the defaults.</param>
    /// <returns>The quantized layer, on the weight's device.</returns>
    /// <exception cref="ArgumentException">The module has no 2-D <c>weight</c> parameter.</exception>
    public static Linear4bit FromLinear(nn.Module<Tensor, Tensor> linear, Nf4Options? options = null)
    {
        ArgumentNullException.ThrowIfNull(linear);
        Tensor? weight = null;
        Tensor? bias = null;
        if (linear is Linear dense)
        {
            weight = dense.weight;
            bias = dense.bias;
        }
        else
        {
            foreach (var (name, p) in linear.named_parameters(recurse: false))
            {
                if (name == "weight")
                {
                    weight = p;
                }
                else if (name == "bias")
                {
                    bias = p;
                }
            }
        }

        if (weight is null || weight.dim() != 2)
        {
            throw new ArgumentException("linear must have a 2-D parameter named 'weight'.", nameof(linear));
        }

        return FromLinear(weight, bias, options);
    }

    /// <summary>Quantizes a weight <c>[out, in]</c> (and copies an optional bias) into a new <see cref="Linear4bit"/>.</summary>
    /// <param name="weight">The dense weight.</param>
    /// <param name="bias">Optional bias <c>[out]</c>.</param>
    /// <param name="options">NF4 options (validated); null means the defaults.</param>
    /// <returns>The quantized layer, on the weight's device.</returns>
    public static Linear4bit FromLinear(Tensor weight, Tensor? bias = null, Nf4Options? options = null)
    {
        ArgumentNullException.ThrowIfNull(weight);
        return FromLinear(weight, bias, options ?? new Nf4Options(), weight.device);
    }

    /// <summary>
    /// <see cref="FromLinear(Tensor, Tensor?, Nf4Options?)"/> with the layer built on <paramref name="device"/>: a host
    /// weight is sent there one quantization chunk at a time (the device never holds it in full precision); the bias,
    /// if any, must already be on <paramref name="device"/>.
    /// </summary>
    internal static Linear4bit FromLinear(Tensor weight, Tensor? bias, Nf4Options options, Device device)
    {
        ArgumentNullException.ThrowIfNull(weight);
        options = options.Validate();
        using var nf4 = Nf4Tensor.Quantize(weight, options, Nf4Kernels.DefaultChunkElements, device);
        return new Linear4bit(nf4, bias, options.ComputeDtype, "Linear4bit", adoptWeight: true);
    }

    /// <summary>Builds a layer from an already quantized weight (e.g. read with <see cref="Nf4Tensor.FromBitsAndBytesState(IReadOnlyDictionary{string, Tensor}, string)"/>); the tensors are copied.</summary>
    /// <param name="weight">The NF4 weight <c>[out, in]</c>.</param>
    /// <param name="bias">Optional bias.</param>
    /// <param name="computeDtype">Compute dtype (BFloat16 by default).</param>
    /// <returns>The layer.</returns>
    public static Linear4bit FromNf4(Nf4Tensor weight, Tensor? bias = null, ScalarType computeDtype = ScalarType.BFloat16)
    {
        ArgumentNullException.ThrowIfNull(weight);
        return new Linear4bit(weight, bias, computeDtype, "Linear4bit", adoptWeight: false);
    }

    /// <summary>
    /// Builds a layer that takes over <paramref name="weight"/>'s tensors as its buffers without copying them;
    /// <paramref name="weight"/> must own its tensors and no longer owns them afterwards (disposing it frees nothing).
    /// The bias is copied.
    /// </summary>
    internal static Linear4bit AdoptNf4(Nf4Tensor weight, Tensor? bias, ScalarType computeDtype)
    {
        ArgumentNullException.ThrowIfNull(weight);
        return new Linear4bit(weight, bias, computeDtype, "Linear4bit", adoptWeight: true);
    }

    /// <summary>A non-owning view of the current quantized weight buffers (valid until the module is moved or disposed).</summary>
    /// <returns>The weight as an <see cref="Nf4Tensor"/>; disposing it does not free the buffers.</returns>
    public Nf4Tensor QuantizedWeight()
    {
        var buffers = named_buffers(recurse: false).ToDictionary(b => b.name, b => b.buffer, StringComparer.Ordinal);
        return new Nf4Tensor(
            buffers["weight"],
            buffers["weight_absmax"],
            _doubleQuant ? buffers["weight_nested_absmax"] : null,
            _doubleQuant ? buffers["weight_nested_quant_map"] : null,
            _doubleQuant ? _nestedOffset : 0f,
            _shape,
            _weightDtype,
            _blockSize,
            _nestedBlockSize,
            ownsTensors: false,
            codebook: Codebook(buffers["weight"].device));
    }

    /// <summary>The layer's tensors under bitsandbytes' key names for module prefix <paramref name="prefix"/> (CPU copies).</summary>
    /// <param name="prefix">Module prefix, e.g. <c>model.layers.0.mlp.down_proj</c>.</param>
    /// <returns>Key → tensor, including <c>P.bias</c> when present.</returns>
    public IReadOnlyDictionary<string, Tensor> ToBitsAndBytesState(string prefix)
    {
        using var w = QuantizedWeight();
        var state = new Dictionary<string, Tensor>(w.ToBitsAndBytesState(prefix), StringComparer.Ordinal);
        var bias = BiasOrNull();
        if (bias is not null)
        {
            using Tensor detached = bias.detach();
            state[BitsAndBytesKeys.Key(prefix, "bias")] = detached.to(CPU, copy: true);
        }

        return state;
    }

    // A detached copy; the intermediate handle is disposed at once so it never pins the source's storage.
    private static Tensor Copy(Tensor t)
    {
        using Tensor detached = t.detach();
        return detached.clone();
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _codebook?.Dispose();
            _codebook = null;
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// A dtype change (<c>.to(dtype)</c>, <c>.half()</c>, <c>.bfloat16()</c>, or one applied to a parent module) converts
    /// only the bias, as bitsandbytes' <c>Params4bit</c> does: the packed codes and every scale buffer keep their
    /// uint8/float32 storage bit for bit and <see cref="ComputeDtype"/> stays.
    /// </summary>
    /// <param name="dtype">The new dtype of the bias (floating or complex, as TorchSharp requires).</param>
    /// <param name="non_blocking">Passed on to the conversion.</param>
    /// <returns>This layer.</returns>
    protected override nn.Module _to(ScalarType dtype, bool non_blocking)
    {
        ThrowIfNotFloating(dtype);
        CastBias(dtype);
        return this;
    }

    /// <summary>Moves every tensor to <paramref name="device"/> (no dtype change) and converts only the bias to <paramref name="dtype"/>.</summary>
    /// <param name="device">The target device.</param>
    /// <param name="dtype">The new dtype of the bias.</param>
    /// <param name="non_blocking">Passed on to the move.</param>
    /// <returns>This layer.</returns>
    protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking)
    {
        ArgumentNullException.ThrowIfNull(device);
        ThrowIfNotFloating(dtype);
        _to(device.type, device.index, non_blocking);
        CastBias(dtype);
        return this;
    }

    private static void ThrowIfNotFloating(ScalarType dtype)
    {
        if (!is_floating_point(dtype) && !is_complex(dtype))
        {
            throw new ArgumentException($"nn.Module.to accepts only floating point or complex types; got {dtype}.", nameof(dtype));
        }
    }

    private void CastBias(ScalarType dtype)
    {
        foreach (var (name, p) in named_parameters(recurse: false).ToList())
        {
            if (name == "bias" && ReplaceParameter(dtype, null, p, out Parameter? cast))
            {
                p.Dispose();
                ConditionallyRegisterParameter(name, cast);
            }
        }
    }

    private Tensor Codebook(Device device)
    {
        if (_codebook is null || !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(_codebook.device, device))
        {
            _codebook?.Dispose();
            _codebook = Nf4Kernels.PairCodebook(device).DetachFromDisposeScope();
        }

        return _codebook;
    }

    /// <inheritdoc />
    Tensor? Mistral.Core.Modeling.IFusedDecodeProjection.TryProjectWith(Tensor x, IReadOnlyList<object> others, bool siluUp, Tensor? residual)
    {
        if (!UseFusedKernels || training || (x.requires_grad && is_grad_enabled()) || ComputeDtype != ScalarType.BFloat16
            || x.dtype != ScalarType.BFloat16 || x.device_type != DeviceType.CUDA || BiasOrNull() is not null || others.Count > 2
            || others.Any(o => o is not Linear4bit { UseFusedKernels: true, training: false } l || l.ComputeDtype != ScalarType.BFloat16 || l.BiasOrNull() is not null))
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Nf4Tensor[] weights = [QuantizedWeight(), .. others.Select(o => ((Linear4bit)o).QuantizedWeight())];
        try
        {
            return Quantization.Cuda.Nf4Gemv.TryMultiplyGroup(x, weights, Codebook(x.device), siluUp, residual)?.MoveToOuterDisposeScope();
        }
        finally
        {
            foreach (Nf4Tensor w in weights)
            {
                w.Dispose();
            }
        }
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.size(-1) != InFeatures)
        {
            throw new ArgumentException($"input's last dimension must be {InFeatures} (in features); got {input.size(-1)}.", nameof(input));
        }

        var inputDtype = input.dtype;
        using var scope = NewDisposeScope();
        // A non-owning view of the buffers; not disposed here because the autograd node keeps it for backward.
        var weight = QuantizedWeight();
        var x = input.dtype == ComputeDtype ? input : input.to(ComputeDtype);
        Tensor y;
        if (x.requires_grad && is_grad_enabled())
        {
            y = Nf4MatMulFunction.apply(x, weight, ComputeDtype);
        }
        else if (UseFusedKernels && !training && x.device.type == DeviceType.CUDA && ComputeDtype == ScalarType.BFloat16
            && x.numel() / InFeatures <= Quantization.Cuda.Nf4Gemv.MaxRows
            && Quantization.Cuda.Nf4Gemv.TryMultiply(x.reshape(-1, InFeatures), weight, Codebook(x.device)) is Tensor product)
        {
            // Decoding and small batches: the weight is read once in 4-bit, never dequantized into memory.
            y = product.view([.. x.shape[..^1], OutFeatures]);
        }
        else
        {
            var w = Nf4MatMulFunction.DequantizeForCompute(weight, ComputeDtype);
            y = nn.functional.linear(x, w);
        }

        var bias = BiasOrNull();
        if (bias is not null)
        {
            y = y + (bias.dtype == ComputeDtype ? bias : bias.to(ComputeDtype));
        }

        if (y.dtype != inputDtype)
        {
            y = y.to(inputDtype);
        }

        return y.MoveToOuterDisposeScope();
    }

    private Tensor? BiasOrNull()
    {
        foreach (var (name, p) in named_parameters(recurse: false))
        {
            if (name == "bias")
            {
                return p;
            }
        }

        return null;
    }
}
