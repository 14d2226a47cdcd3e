using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using Mistral.Core.Configuration;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>The SiLU-gated MLP: <c>down(silu(gate(x)) · up(x))</c>.</summary>
public sealed class MistralMlp : nn.Module<Tensor, Tensor>, IReplaceableChildren
{
    [ComponentName(Name = "gate_proj")]
    private nn.Module<Tensor, Tensor> gateProj;
    [ComponentName(Name = "up_proj")]
    private nn.Module<Tensor, Tensor> upProj;
    [ComponentName(Name = "down_proj")]
    private nn.Module<Tensor, Tensor> downProj;

    /// <summary>Creates the MLP.</summary>
    public MistralMlp(MistralConfig config, ScalarType dtype, Device device)
        : base(nameof(MistralMlp))
    {
        gateProj = new Linear(config.HiddenSize, config.IntermediateSize, false, dtype, device);
        upProj = new Linear(config.HiddenSize, config.IntermediateSize, false, dtype, device);
        downProj = new Linear(config.IntermediateSize, config.HiddenSize, false, dtype, device);
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <summary>
    /// Whether a bfloat16 CUDA forward computes <c>silu(gate) · up</c> in one fused kernel (and, with autograd, its
    /// gradients in one fused backward kernel). Default true.
    /// </summary>
    public bool UseFusedKernels { get; set; } = true;

    /// <summary>
    /// Whether a forward without autograd of a few rows (a decoding step, or a prompt that short) in bfloat16 on CUDA computes
    /// <c>silu(gate(x)) · up(x)</c> with one fused matrix-vector kernel that never writes gate and up (float32 sums,
    /// rounded as the separate ops round; only the summation order differs). Applies while gate and up are both plain bf16
    /// <see cref="Linear"/> layers (at most 2 rows) or both 4-bit layers (not adapters); down_proj then takes the residual
    /// add in its own pass. Default true; set it false through <see cref="MistralForCausalLM.UseFusedDecodeProjections"/>.
    /// </summary>
    public bool UseFusedDecodeProjections { get; set; } = true;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, null);

    /// <summary>
    /// <paramref name="residual"/> + this MLP of <paramref name="x"/> (the decoder layer's second half): in a decoding
    /// step with <see cref="UseFusedDecodeProjections"/>, down_proj and the add run as one kernel.
    /// </summary>
    internal Tensor ForwardResidual(Tensor x, Tensor residual) => Forward(x, residual);

    private Tensor Forward(Tensor x, Tensor? residual)
    {
        using var scope = NewDisposeScope();
        Tensor down;
        long width = x.size(-1);
        if (UseFusedDecodeProjections && !training && !is_grad_enabled() && x.numel() <= Cuda.FusedOps.DecodeProjectionMaxRows * width
            && gateProj is IFusedDecodeProjection gate && gate.TryProjectWith(x.reshape(-1, width), [upProj], siluUp: true) is Tensor fusedProduct)
        {
            if (residual is not null && downProj is IFusedDecodeProjection fusedDown
                && fusedDown.TryProjectWith(fusedProduct, [], siluUp: false, residual.reshape(-1, residual.size(-1))) is Tensor summed)
            {
                return summed.view(residual.shape).MoveToOuterDisposeScope();
            }

            down = downProj.forward(fusedProduct.view([.. x.shape[..^1], fusedProduct.size(-1)]));
        }
        else if (UseFusedKernels && x.device.type == DeviceType.CUDA && x.dtype == ScalarType.BFloat16)
        {
            Tensor g = gateProj.forward(x);
            Tensor u = upProj.forward(x);
            long inner = g.size(-1);
            down = Cuda.FusedOps.SiluMul(g.reshape(-1, inner), u.reshape(-1, inner)) is Tensor product
                ? downProj.forward(product.view(g.shape))
                : downProj.forward(nn.functional.silu(g) * u);
        }
        else
        {
            Tensor gated = nn.functional.silu(gateProj.forward(x)) * upProj.forward(x);
            down = downProj.forward(gated);
        }

        return (residual is null ? down : residual + down).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public void ReplaceChild(string name, nn.Module replacement) => ModuleTree.ReplaceField(this, name, replacement);
}
