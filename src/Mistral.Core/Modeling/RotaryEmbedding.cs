using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Rotary position embedding, non-interleaved ("rotate_half": dimension j pairs with j + d/2), as Hugging Face computes it:
/// <c>inv_freq = 1 / θ^(2j/d)</c> and <c>cos/sin</c> in float32, then cast to the activations' dtype.
/// Positions are absolute; no state is kept, so the module works for any length and on any device.
/// </summary>
public sealed class RotaryEmbedding
{
    private readonly int headDim;
    private readonly double theta;

    /// <summary>Creates the embedding for a head width and base θ.</summary>
    public RotaryEmbedding(int headDim, double theta)
    {
        if (headDim <= 0 || headDim % 2 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim, "head_dim must be a positive even number.");
        }

        this.headDim = headDim;
        this.theta = theta;
    }

    /// <summary>Computes cos and sin [batch, seq, head_dim] for integer positions [batch, seq].</summary>
    /// <param name="positionIds">Absolute positions, int64 [batch, seq].</param>
    /// <param name="dtype">dtype of the result (the activations').</param>
    public (Tensor Cos, Tensor Sin) Compute(Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        Device device = positionIds.device;
        Tensor exponent = arange(0, headDim, 2, ScalarType.Int64, device).to_type(ScalarType.Float32) / headDim;
        Tensor invFreq = 1.0f / pow(theta, exponent).to_type(ScalarType.Float32);
        Tensor freqs = positionIds.to_type(ScalarType.Float32).unsqueeze(-1) * invFreq.view(1, 1, -1);
        Tensor emb = cat([freqs, freqs], -1);
        Tensor cos = emb.cos().to_type(dtype);
        Tensor sin = emb.sin().to_type(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>Applies the rotation to x [batch, heads, seq, head_dim] with cos/sin [batch, seq, head_dim].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        Tensor c = cos.unsqueeze(1);
        Tensor s = sin.unsqueeze(1);
        long half = x.shape[^1] / 2;
        Tensor x1 = x.narrow(-1, 0, half);
        Tensor x2 = x.narrow(-1, half, half);
        Tensor rotated = cat([-x2, x1], -1);
        return ((x * c) + (rotated * s)).MoveToOuterDisposeScope();
    }
}
