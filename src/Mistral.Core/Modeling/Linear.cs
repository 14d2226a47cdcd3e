using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// A linear layer <c>y = x Wᵀ (+ b)</c> whose weight is a real <see cref="Parameter"/> named <c>weight</c>
/// (shape [out, in], as in PyTorch). Created uninitialised: the checkpoint fills it.
/// </summary>
public sealed class Linear : nn.Module<Tensor, Tensor>, ILinearLayer, IFusedDecodeProjection
{
    // Most rows a decoding projection of bf16 weights runs through the fused kernel (IFusedDecodeProjection).
    private const int MaxFusedDecodeRows = 2;

    private Parameter weight;
    private Parameter? bias;

    /// <summary>Creates an uninitialised layer (no random initialisation is paid for).</summary>
    /// <param name="inFeatures">Input width.</param>
    /// <param name="outFeatures">Output width.</param>
    /// <param name="hasBias">Whether the layer has a bias.</param>
    /// <param name="dtype">Parameter dtype.</param>
    /// <param name="device">Parameter device (<c>meta</c> allocates nothing).</param>
    public Linear(long inFeatures, long outFeatures, bool hasBias, ScalarType dtype, Device device)
        : base(nameof(Linear))
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        weight = new Parameter(empty([outFeatures, inFeatures], dtype, device));
        bias = hasBias ? new Parameter(zeros([outFeatures], dtype, device)) : null;
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <inheritdoc />
    public long InFeatures { get; }

    /// <inheritdoc />
    public long OutFeatures { get; }

    /// <summary>The weight [out, in].</summary>
    public Parameter Weight => weight;

    /// <summary>The bias [out], or null.</summary>
    public Parameter? Bias => bias;

    /// <inheritdoc />
    public override Tensor forward(Tensor input) => nn.functional.linear(input, weight, bias);

    /// <inheritdoc />
    Tensor? IFusedDecodeProjection.TryProjectWith(Tensor x, IReadOnlyList<object> others, bool siluUp, Tensor? residual)
    {
        // Above 2 rows cuBLAS reads the bf16 weights faster than the kernel (H100: 114 µs against ≈ 50 µs a call at 8 rows).
        if (bias is not null || x.dim() != 2 || x.size(0) > MaxFusedDecodeRows || others.Count > 2 || others.Any(o => o is not Linear { Bias: null }))
        {
            return null;
        }

        return Cuda.FusedOps.DecodeProjection(x, weight, others.Count > 0 ? ((Linear)others[0]).Weight : null,
            others.Count > 1 ? ((Linear)others[1]).Weight : null, siluUp, residual);
    }
}
