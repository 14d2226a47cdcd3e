using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// RMSNorm as Hugging Face's Mistral computes it: normalise in float32 (<c>x · rsqrt(mean(x²) + ε)</c>),
/// cast back to the input dtype, then multiply by the weight.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private Parameter weight;
    private readonly double eps;

    /// <summary>Creates a norm with weight initialised to ones.</summary>
    public RmsNorm(long size, double eps, ScalarType dtype, Device device)
        : base(nameof(RmsNorm))
    {
        this.eps = eps;
        weight = new Parameter(ones([size], dtype, device));
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <summary>The scale [size].</summary>
    public Parameter Weight => weight;

    /// <summary>
    /// Whether a bfloat16 CUDA forward runs as one fused kernel (same values; the float32 sum of squares may be added in
    /// another order) instead of eight libtorch ops, and with autograd (a frozen weight) the input's gradient as one fused
    /// backward kernel. Default true.
    /// </summary>
    public bool UseFusedKernel { get; set; } = true;

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (UseFusedKernel && Cuda.FusedOps.RmsNorm(input, weight, eps) is Tensor fused)
        {
            return fused;
        }

        using var scope = NewDisposeScope();
        Tensor x = input.to_type(ScalarType.Float32);
        Tensor variance = x.pow(2).mean([-1L], keepdim: true);
        Tensor normed = (x * rsqrt(variance + eps)).to_type(input.dtype);
        return (weight * normed).MoveToOuterDisposeScope();
    }
}
