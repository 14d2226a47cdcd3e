using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// PyTorch's <c>clip_grad_norm_</c> (L2) without a host synchronization: the pre-clip norm stays a device tensor.
/// </summary>
internal static class GradientClipping
{
    /// <summary>
    /// Computes the global L2 norm of the gradients the way libtorch's <c>clip_grad_norm_</c> does (the norm of each
    /// gradient, then the norm of those norms; a lone gradient's norm as is) and, when <paramref name="maxNorm"/> is set,
    /// multiplies every gradient by <c>min(maxNorm / (norm + 1e-6), 1)</c> computed on the device (bit for bit the same
    /// as <c>clip_grad_norm_</c>: <c>full_like(denominator, maxNorm) / denominator</c>, then clamped).
    /// Parameters without a gradient are skipped; with none at all the norm is 0.
    /// </summary>
    /// <returns>The pre-clip norm, a float 0-d tensor on the gradients' device that the caller owns (outside any dispose scope).</returns>
    public static Tensor ClipGradNorm(IReadOnlyList<Parameter> parameters, double? maxNorm) => ClipGradNorm(parameters, maxNorm, null);

    /// <summary>
    /// <see cref="ClipGradNorm(IReadOnlyList{Parameter}, double?)"/> where every gradient is a view of one of
    /// <paramref name="flatGradients"/> (see <see cref="FlatAdamW"/>): the norm is computed the same way, and the
    /// clipping multiplies each flat buffer once instead of each gradient.
    /// </summary>
    public static Tensor ClipGradNorm(IReadOnlyList<Parameter> parameters, double? maxNorm, IReadOnlyList<Tensor>? flatGradients)
    {
        using var guard = no_grad();
        using var scope = NewDisposeScope();
        var grads = new List<Tensor>(parameters.Count);
        foreach (var p in parameters)
        {
            if (p.grad is Tensor g)
            {
                grads.Add(g);
            }
        }

        if (grads.Count == 0)
        {
            return zeros([], ScalarType.Float32, parameters[0].device).DetachFromDisposeScope();
        }

        Tensor total = grads.Count == 1 ? grads[0].norm(2f) : stack(grads.Select(g => g.norm(2f))).norm(2f);
        if (maxNorm is double max)
        {
            Tensor denominator = total.add(1e-6);
            Tensor coefficient = full_like(denominator, max).div_(denominator).clamp_max_(1.0);
            foreach (var g in (IEnumerable<Tensor>?)flatGradients ?? grads)
            {
                g.mul_(coefficient);
            }
        }

        return total.DetachFromDisposeScope();
    }
}
