using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Cuda;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using CoreLinear = Mistral.Core.Modeling.Linear;

namespace Mistral.Peft.Lora;

/// <summary>
/// A frozen linear layer plus a trainable low-rank update, computed as PEFT's <c>lora.Linear</c> does:
/// <c>y = base(x) + B(A(dropout(x))) · scaling</c>. The base layer is wrapped, not copied, and registered as the child
/// <c>base_layer</c> (its weight is <c>….q_proj.base_layer.weight</c>); A and B are the children <c>lora_A</c>
/// (weight [r, in]) and <c>lora_B</c> (weight [out, r]) in the adapter dtype.
/// </summary>
/// <remarks>
/// <para>The LoRA branch casts x to the adapter dtype, applies dropout (training mode only), A, B and the scaling in that
/// dtype. Over a 16/32-bit base the branch is added to the base output in the promoted dtype and the sum is cast back to
/// the base output's dtype (PEFT's <c>lora.Linear.forward</c>); over a <see cref="Linear4bit"/> base the branch is cast to the
/// base output's dtype first and then added (PEFT's <c>lora.bnb.Linear4bit.forward</c>).</para>
/// <para>Merging adds (B·A)·scaling, computed in float32, into the base weight; over a 4-bit base it dequantizes, adds and
/// re-quantizes, which is lossy (a warning is logged).</para>
/// </remarks>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>, ILinearLayer, IFusedKernelSwitch
{
    [ComponentName(Name = "base_layer")]
    private nn.Module<Tensor, Tensor> baseLayer;
    [ComponentName(Name = "lora_A")]
    private CoreLinear loraA;
    [ComponentName(Name = "lora_B")]
    private CoreLinear loraB;

    private readonly ILogger _logger;

    /// <summary>Wraps <paramref name="baseLayer"/> (whose parameters are frozen here) with a new LoRA update.</summary>
    /// <param name="baseLayer">A linear layer: <see cref="CoreLinear"/>, <see cref="Linear4bit"/>, or any <see cref="ILinearLayer"/> with a 2-D <c>weight</c> parameter.</param>
    /// <param name="options">The LoRA options (validated here).</param>
    /// <param name="generator">Random generator for the initialisation; null uses TorchSharp's default one.</param>
    /// <param name="logger">Receives the lossy-merge warning of 4-bit bases; null logs nothing.</param>
    /// <remarks>The new layer takes the base layer's training/eval mode.</remarks>
    /// <exception cref="ArgumentException">The base is not a supported linear layer, or an option is invalid.</exception>
    public LoraLinear(nn.Module<Tensor, Tensor> baseLayer, LoraOptions options, Generator? generator = null, ILogger? logger = null)
        : base(nameof(LoraLinear))
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (baseLayer is LoraLinear)
        {
            throw new ArgumentException("The layer already has a LoRA adapter; LoRA layers cannot be nested.", nameof(baseLayer));
        }

        if (baseLayer is not ILinearLayer linear)
        {
            throw new ArgumentException($"LoRA wraps linear layers (ILinearLayer); got {baseLayer.GetType().Name}.", nameof(baseLayer));
        }

        if (baseLayer is not (CoreLinear or Linear4bit) && DenseWeightOrNull(baseLayer) is null)
        {
            throw new ArgumentException($"{baseLayer.GetType().Name} has no 2-D parameter named 'weight' to merge into.", nameof(baseLayer));
        }

        InFeatures = linear.InFeatures;
        OutFeatures = linear.OutFeatures;
        Rank = options.R;
        Scaling = options.Scaling;
        DropoutProbability = options.Dropout;
        AdapterDtype = options.AdapterDtype;
        _logger = logger ?? NullLogger.Instance;

        Device device = DeviceOf(baseLayer);
        foreach (var p in baseLayer.parameters())
        {
            p.requires_grad = false;
        }

        this.baseLayer = baseLayer;
        loraA = new CoreLinear(InFeatures, Rank, false, AdapterDtype, device);
        loraB = new CoreLinear(Rank, OutFeatures, false, AdapterDtype, device);
        Initialize(options.Init, generator);
        RegisterComponents();
        (_deviceType, _deviceIndex) = Mistral.Core.Modeling.ModuleDevice.Origin(device);

        // A new module starts in training mode; take the wrapped layer's mode so that injecting into a model in
        // eval mode does not switch LoRA dropout on.
        train(baseLayer.training);
    }

    /// <inheritdoc />
    public long InFeatures { get; }

    /// <inheritdoc />
    public long OutFeatures { get; }

    /// <summary>The rank r.</summary>
    public int Rank { get; }

    /// <summary>The factor applied to B·A (alpha / r, or alpha / √r for rsLoRA).</summary>
    public double Scaling { get; }

    /// <summary>Dropout probability of the LoRA branch (training mode only).</summary>
    public double DropoutProbability { get; }

    /// <summary>dtype of A, B and the LoRA branch.</summary>
    public ScalarType AdapterDtype { get; }

    /// <summary>The wrapped (frozen) layer.</summary>
    public nn.Module<Tensor, Tensor> BaseLayer => baseLayer;

    /// <summary>A's weight [r, in] (trainable).</summary>
    public Parameter LoraA => loraA.Weight;

    /// <summary>B's weight [out, r] (trainable).</summary>
    public Parameter LoraB => loraB.Weight;

    /// <summary>Whether the update is currently merged into the base weight (the forward then runs the base alone).</summary>
    public bool Merged { get; private set; }

    /// <summary>
    /// Whether the LoRA branch is applied. When false the forward is the base layer's (a merged layer is unmerged first,
    /// as PEFT does).
    /// </summary>
    public bool AdapterEnabled { get; set; } = true;

    /// <summary>Whether the base stores its weight in 4 bits (merging is then lossy).</summary>
    public bool IsQuantizedBase => baseLayer is Linear4bit;

    /// <summary>
    /// Whether fused CUDA kernels serve the LoRA branch: over a bfloat16 result the scaled update is added and cast in one
    /// kernel (forward and backward) instead of three libtorch passes, bit-identical; and the fused adapter products of
    /// <see cref="UseFusedProduct"/> and the fused dropout of <see cref="UseFusedDropout"/>, where those are on.
    /// Default true; false runs libtorch's ops throughout.
    /// </summary>
    public bool UseFusedKernels { get; set; } = true;

    /// <summary>
    /// Whether, in training on CUDA over a bfloat16 input, PEFT's <c>dropout(x.to(float32))</c> runs as one fused kernel
    /// whose mask is a hash of a seed drawn from libtorch's CUDA generator and is recomputed in backward (same
    /// distribution as libtorch's dropout, its own random stream; no mask kept). Default true (the GPU test lane checks
    /// its values, gradients, drop rate and replay on an H100); set it false (or <see cref="LoraModel.UseFusedDropout"/>)
    /// to draw libtorch's own dropout stream. Without CUDA the setting changes nothing.
    /// </summary>
    public bool UseFusedDropout { get; set; } = true;

    /// <summary>
    /// Whether, on CUDA over bfloat16 with r ≤ 64 and in/out-features multiples of 8, the adapter's float32 products run as
    /// fused kernels that never write a [tokens, features] float32 tensor: the first, <c>lora_A(dropout(x.to(float32)))</c>,
    /// makes the dropout (or the cast) inside its products forward and backward; the second, <c>lora_B</c>, is computed
    /// inside the combine with the base output, and its backward reads the bf16 output gradient directly. Values and
    /// gradients equal libtorch's ops to float32 rounding (another summation order than cuBLAS, deterministic), not bit
    /// for bit; the GPU test lane checks them at 7B widths. Default true; false keeps cuBLAS's products (bit-identical to
    /// the autograd path). Needs <see cref="UseFusedKernels"/>, and with dropout <see cref="UseFusedDropout"/> (the same
    /// mask). Without CUDA the setting changes nothing.
    /// </summary>
    public bool UseFusedProduct { get; set; } = true;

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (!AdapterEnabled)
        {
            if (Merged)
            {
                Unmerge();
            }

            return baseLayer.forward(input);
        }

        if (Merged)
        {
            return baseLayer.forward(input);
        }

        using var scope = NewDisposeScope();
        Tensor result = baseLayer.forward(input);
        ScalarType resultDtype = result.dtype;
        double p = training ? DropoutProbability : 0;
        Tensor h; // lora_A(dropout(x)), before lora_B
        if (UseFusedKernels && LoraInputProjectionFunction.Applies(input, LoraA, p, UseFusedDropout, out CudaFunction projectionDropout))
        {
            // lora_A(dropout(x.to(float32))) whose float32 input is never kept: over bf16 with r ≤ 64 it is made inside the
            // products by the fused kernels (float32 rounding of cuBLAS's sums), else made again in backward (bit-identical).
            h = LoraInputProjectionFunction.apply(input, LoraA, p, projectionDropout, UseFusedProduct);
        }
        else if (UseFusedKernels && UseFusedProduct && !(is_grad_enabled() && (input.requires_grad || LoraA.requires_grad))
            && AdapterDtype == ScalarType.Float32 && (p == 0 || (UseFusedDropout && LoraDropoutFunction.TryGetKernel(input, p, out _)))
            && LoraDropoutFunction.CanProject(input, LoraA))
        {
            // Without autograd (a checkpointed layer's first forward, evaluation): the same fused product, drawing its seed
            // as the recomputation under autograd does, so both make the same mask.
            h = LoraDropoutFunction.ProjectWithNewSeed(input, p, LoraA.detach()).H;
        }
        else
        {
            Tensor x;
            if (p > 0 && UseFusedDropout && UseFusedKernels && AdapterDtype == ScalarType.Float32
                && LoraDropoutFunction.TryGetKernel(input, p, out CudaFunction dropoutKernel))
            {
                // PEFT's dropout(x.to(float32)) as one pass, the mask recomputed in backward instead of stored.
                x = LoraDropoutFunction.Dropout(dropoutKernel, input, p);
            }
            else
            {
                x = input.dtype == AdapterDtype ? input : input.to(AdapterDtype);
                if (p > 0)
                {
                    x = nn.functional.dropout(x, p, true);
                }
            }

            h = loraA.forward(x);
        }

        if (UseFusedKernels && UseFusedProduct && LoraOutputCombineFunction.Applies(result, h, LoraB))
        {
            // lora_B and the combine in one pass, the float32 update never written (float32 rounding of cuBLAS's sums).
            bool roundOutput = baseLayer is Linear4bit;
            Tensor fused = is_grad_enabled() && (result.requires_grad || h.requires_grad || LoraB.requires_grad)
                ? LoraOutputCombineFunction.apply(result, h, LoraB, Scaling, roundOutput)
                : LoraOutputCombineFunction.Forward(result, h, LoraB, Scaling, roundOutput);
            return fused.MoveToOuterDisposeScope();
        }

        Tensor u = loraB.forward(h);
        if (UseFusedKernels && LoraCombineFunction.TryGetKernel(result, u, out CudaFunction kernel))
        {
            // One pass instead of scale, promoting add and cast over the whole output (bit-identical).
            bool roundUpdate = baseLayer is Linear4bit;
            Tensor combined = result.requires_grad || u.requires_grad
                ? LoraCombineFunction.apply(result, u, Scaling, roundUpdate, kernel)
                : LoraCombineFunction.Forward(kernel, result, u, Scaling, roundUpdate);
            return combined.MoveToOuterDisposeScope();
        }

        Tensor update = u.mul(Scaling);
        if (baseLayer is Linear4bit)
        {
            result = result + (update.dtype == resultDtype ? update : update.to(resultDtype));
        }
        else
        {
            result = result + update;
            if (result.dtype != resultDtype)
            {
                result = result.to(resultDtype);
            }
        }

        return result.MoveToOuterDisposeScope();
    }

    /// <summary>The update (B·A)·scaling as a new float32 tensor [out, in], computed in float32.</summary>
    /// <returns>A new tensor on the adapter's device; the caller disposes it.</returns>
    public Tensor DeltaWeight()
    {
        using var guard = no_grad();
        using var scope = NewDisposeScope();
        Tensor a = LoraA.detach().to(ScalarType.Float32);
        Tensor b = LoraB.detach().to(ScalarType.Float32);
        return matmul(b, a).mul(Scaling).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Adds the update into the base weight: a 16/32-bit weight becomes <c>cast(float32(W) + Δ)</c>; a 4-bit weight is
    /// dequantized, Δ added in float32 and the sum re-quantized with the same block layout into a new
    /// <see cref="Linear4bit"/> that replaces <see cref="BaseLayer"/> (lossy; logged as a warning; the old layer is disposed).
    /// Does nothing (with a warning) when already merged.
    /// </summary>
    public void Merge()
    {
        if (Merged)
        {
            _logger.LogWarning("LoRA layer is already merged; nothing to do.");
            return;
        }

        ApplyDelta(+1);
        Merged = true;
    }

    /// <summary>
    /// Subtracts the update from the base weight (PEFT's unmerge: <c>W -= Δ.to(W.dtype)</c>; a 4-bit weight is
    /// dequantized, Δ subtracted and re-quantized, lossy). Does nothing (with a warning) when not merged.
    /// </summary>
    public void Unmerge()
    {
        if (!Merged)
        {
            _logger.LogWarning("LoRA layer is not merged; nothing to unmerge.");
            return;
        }

        ApplyDelta(-1);
        Merged = false;
    }

    private void ApplyDelta(int sign)
    {
        using var guard = no_grad();
        if (baseLayer is Linear4bit q)
        {
            _logger.LogWarning(
                "{Operation} a LoRA update into a 4-bit layer [{Out}, {In}] re-quantizes its weight to NF4: this is lossy, outputs will differ slightly from the unmerged adapter.",
                sign > 0 ? "Merging" : "Unmerging", OutFeatures, InFeatures);
            var replacement = Requantized(q, sign);
            ModuleTree.ReplaceField(this, "base_layer", replacement);
            q.Dispose();
            return;
        }

        using var scope = NewDisposeScope();
        Tensor delta = DeltaWeight();
        Tensor weight = baseLayer is CoreLinear dense ? dense.Weight : DenseWeightOrNull(baseLayer)!;
        delta = delta.to(weight.device);
        if (sign > 0)
        {
            weight.copy_(weight.to(ScalarType.Float32).add(delta));
        }
        else
        {
            weight.sub_(delta.to(weight.dtype));
        }
    }

    /// <summary>A new 4-bit layer holding NF4(dequant(W) ± Δ) with W's block layout, dtype, compute dtype, bias and mode.</summary>
    private Linear4bit Requantized(Linear4bit layer, int sign)
    {
        Linear4bit replacement;
        using (var scope = NewDisposeScope())
        {
            using var view = layer.QuantizedWeight();
            Tensor current = view.Dequantize(view.DType).to(ScalarType.Float32);
            Tensor delta = DeltaWeight().to(current.device);
            Tensor updated = sign > 0 ? current.add(delta) : current.sub(delta);
            var options = new Nf4Options
            {
                BlockSize = view.BlockSize,
                DoubleQuant = view.IsDoubleQuantized,
                NestedBlockSize = view.NestedBlockSize,
                ComputeDtype = layer.ComputeDtype,
                WeightDtype = view.DType,
            };
            using var requantized = Nf4Tensor.Quantize(updated, options);
            Tensor? bias = layer.named_parameters(recurse: false).Where(p => p.name == "bias").Select(p => (Tensor)p.parameter).FirstOrDefault();
            replacement = Linear4bit.AdoptNf4(requantized, bias, layer.ComputeDtype);

            // The new layer's tensors were created inside this scope (or a caller's): they belong to the module now.
            foreach (var t in replacement.buffers())
            {
                t.DetachFromDisposeScope();
            }

            foreach (var t in replacement.parameters())
            {
                t.DetachFromDisposeScope();
            }
        }

        replacement.train(layer.training);
        return replacement;
    }

    private void Initialize(LoraInit init, Generator? generator)
    {
        using var guard = no_grad();
        switch (init)
        {
            case LoraInit.KaimingUniform:
                KaimingUniformSqrt5(LoraA, generator);
                LoraB.zero_();
                break;
            case LoraInit.Gaussian:
                DrawOnCpu(LoraA, generator, t => t.normal_(0.0, 1.0 / Rank, generator));
                LoraB.zero_();
                break;
            case LoraInit.LinearDefault:
                KaimingUniformSqrt5(LoraA, generator);
                KaimingUniformSqrt5(LoraB, generator);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(init), init, "Unknown LoRA initialisation.");
        }
    }

    /// <summary>torch's <c>kaiming_uniform_(w, a=√5)</c> for a 2-D weight: gain = √(2/(1+a²)), bound = gain·√(3/fan_in), fan_in = columns.</summary>
    private static void KaimingUniformSqrt5(Tensor weight, Generator? generator)
    {
        const double a = 2.23606797749979; // √5
        double gain = Math.Sqrt(2.0 / (1.0 + (a * a)));
        double bound = gain * Math.Sqrt(3.0 / weight.size(1));
        DrawOnCpu(weight, generator, t => t.uniform_(-bound, bound, generator));
    }

    // A seeded generator is a CPU generator: draw on the CPU and copy, so the same seed gives the same adapter on any
    // device (and a CUDA weight never meets a CPU generator, which libtorch rejects).
    private static void DrawOnCpu(Tensor weight, Generator? generator, Action<Tensor> draw)
    {
        if (generator is null || weight.device.type == DeviceType.CPU)
        {
            draw(weight);
            return;
        }

        using Tensor host = empty(weight.shape, weight.dtype, CPU);
        draw(host);
        weight.copy_(host);
    }

    private static Tensor? DenseWeightOrNull(nn.Module module)
    {
        foreach (var (name, p) in module.named_parameters(recurse: false))
        {
            if (name == "weight" && p.dim() == 2)
            {
                return p;
            }
        }

        return null;
    }

    private static Device DeviceOf(nn.Module module)
    {
        foreach (var p in module.parameters())
        {
            return p.device;
        }

        foreach (var b in module.buffers())
        {
            return b.device;
        }

        return CPU;
    }
}
