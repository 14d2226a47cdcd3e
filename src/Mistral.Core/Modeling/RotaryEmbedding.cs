using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Rotary position embedding, non-interleaved ("rotate_half": dimension j pairs with j + d/2), as Hugging Face computes it:
/// <c>inv_freq = 1 / θ^(2j/d)</c>, angles and <c>cos/sin</c> in float32, then cast to the activations' dtype.
/// Positions are absolute. The float32 cos/sin tables are cached per device and extended (doubling) on demand, so a
/// decode step only gathers its rows. Thread-safe.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly int headDim;
    private readonly double theta;
    private readonly object gate = new();
    private readonly Dictionary<string, (Tensor Cos, Tensor Sin, long Length)> tables = new(StringComparer.Ordinal);
    private readonly List<Tensor> retired = [];
    private bool disposed;

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
    /// <param name="positionIds">Absolute positions, int64 [batch, seq], all ≥ 0.</param>
    /// <param name="dtype">dtype of the result (the activations').</param>
    /// <param name="positionBound">An exclusive upper bound of the positions when the caller knows one (saves a device sync); null to measure it.</param>
    public (Tensor Cos, Tensor Sin) Compute(Tensor positionIds, ScalarType dtype, long? positionBound = null)
    {
        ArgumentNullException.ThrowIfNull(positionIds);
        long needed = positionBound ?? (positionIds.numel() == 0 ? 1 : positionIds.max().item<long>() + 1);
        var (cosTable, sinTable) = Tables(positionIds.device, Math.Max(needed, 1));
        using var scope = NewDisposeScope();
        Tensor flat = positionIds.reshape(-1);
        long[] shape = [.. positionIds.shape, headDim];
        Tensor cos = cosTable.index_select(0, flat).view(shape).to_type(dtype);
        Tensor sin = sinTable.index_select(0, flat).view(shape).to_type(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>Applies the rotation to x [batch, heads, seq, head_dim] with cos/sin [batch, seq, head_dim].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        Tensor c = cos.unsqueeze(1);
        Tensor s = sin.unsqueeze(1);
        long half = x.size(-1) / 2;
        Tensor x1 = x.narrow(-1, 0, half);
        Tensor x2 = x.narrow(-1, half, half);
        Tensor rotated = cat([-x2, x1], -1);
        return ((x * c) + (rotated * s)).MoveToOuterDisposeScope();
    }

    private (Tensor Cos, Tensor Sin) Tables(Device device, long needed)
    {
        string key = device.ToString();
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (tables.TryGetValue(key, out var t) && t.Length >= needed)
            {
                return (t.Cos, t.Sin);
            }

            long length = Math.Max(needed, 2 * (t.Length == 0 ? 64 : t.Length));
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                Tensor exponent = arange(0, headDim, 2, ScalarType.Int64, device).to_type(ScalarType.Float32) / headDim;
                Tensor invFreq = 1.0f / pow(theta, exponent).to_type(ScalarType.Float32);
                Tensor positions = arange(0, length, 1, ScalarType.Int64, device).to_type(ScalarType.Float32);
                Tensor freqs = positions.unsqueeze(-1) * invFreq.unsqueeze(0);
                Tensor emb = cat([freqs, freqs], -1);
                Tensor cos = emb.cos().DetachFromDisposeScope();
                Tensor sin = emb.sin().DetachFromDisposeScope();
                if (t.Cos is not null)
                {
                    // Another thread may still be gathering from the old tables: free them only on Dispose.
                    retired.Add(t.Cos);
                    retired.Add(t.Sin);
                }

                tables[key] = (cos, sin, length);
                return (cos, sin);
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed)
            {
                return;
            }

            disposed = true;
            foreach (var (cos, sin, _) in tables.Values)
            {
                cos.Dispose();
                sin.Dispose();
            }

            retired.ForEach(t => t.Dispose());
            tables.Clear();
            retired.Clear();
        }
    }
}
