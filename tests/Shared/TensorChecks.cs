using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Tests.Shared;

/// <summary>Exact and max-abs comparisons of tensors.</summary>
internal static class TensorChecks
{
    /// <summary>Same shape, same dtype and bit-identical values (torch.equal in TorchSharp is elementwise).</summary>
    public static bool Exactly(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype)
        {
            return false;
        }

        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }

    /// <summary>max |t| as a float.</summary>
    public static float MaxAbs(Tensor t)
    {
        using var a = t.abs();
        using var m = a.max();
        return m.item<float>();
    }

    /// <summary>max |a − b|, both taken to float32 first (so bfloat16 and float32 tensors compare).</summary>
    public static float MaxAbsDiff(Tensor a, Tensor b)
    {
        using var d = (a.to(ScalarType.Float32) - b.to(ScalarType.Float32)).abs().max();
        return d.item<float>();
    }
}
