using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

public class RotaryEmbeddingTests
{
    // HF's formula computed directly for the given positions, as the reference.
    private static (Tensor Cos, Tensor Sin) Direct(Tensor positions, int headDim, double theta)
    {
        Tensor exponent = arange(0, headDim, 2, ScalarType.Int64).to_type(ScalarType.Float32) / headDim;
        Tensor invFreq = 1.0f / pow(theta, exponent).to_type(ScalarType.Float32);
        Tensor freqs = positions.to_type(ScalarType.Float32).unsqueeze(-1) * invFreq.view(1, 1, -1);
        Tensor emb = cat([freqs, freqs], -1);
        return (emb.cos(), emb.sin());
    }

    [Fact]
    public void CachedTablesExtendOnDemandAndEqualTheDirectFormula()
    {
        using var rope = new RotaryEmbedding(16, 10000);
        foreach (long[] batch in new[] { new long[] { 0, 1, 2, 3 }, [5, 70, 130, 131], [1000, 4095, 17, 0] })
        {
            using var scope = NewDisposeScope();
            Tensor positions = tensor(batch, [1, batch.Length]);
            var (cos, sin) = rope.Compute(positions, ScalarType.Float32);
            var (dc, ds) = Direct(positions, 16, 10000);
            TensorChecks.MaxAbsDiff(cos, dc).Should().BeLessThanOrEqualTo(1e-7f);
            TensorChecks.MaxAbsDiff(sin, ds).Should().BeLessThanOrEqualTo(1e-7f);
            cos.shape.Should().Equal(1, batch.Length, 16);
        }
    }

    [Fact]
    public void CastsAfterComputingInFloat32()
    {
        using var rope = new RotaryEmbedding(8, 500000);
        using var positions = tensor(new long[] { 3, 900 }, [1, 2]);
        var (cos, _) = rope.Compute(positions, ScalarType.BFloat16);
        var (cos32, _) = rope.Compute(positions, ScalarType.Float32);
        cos.dtype.Should().Be(ScalarType.BFloat16);
        TensorChecks.Exactly(cos, cos32.to_type(ScalarType.BFloat16)).Should().BeTrue();
    }
}
