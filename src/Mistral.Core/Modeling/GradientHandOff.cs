using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Releases the managed handles of the gradients that pass through a custom autograd function's backward. TorchSharp
/// wraps each incoming gradient in a new <see cref="Tensor"/> and keeps the returned gradients' wrappers, and each
/// wrapper holds its gradient's memory until it is disposed: at the end of the enclosing dispose scope (inside a
/// checkpointed layer's backward, the whole layer's gradients) or when the garbage collector finalizes it (on the
/// autograd engine's device thread, where no scope is open). libtorch holds its own references for as long as it needs
/// the tensors, so the incoming gradient's handle can go as soon as the backward has used it, and the returned ones as
/// soon as libtorch has taken them — which it has done by the next backward call on the same thread.
/// </summary>
internal static class GradientHandOff
{
    [ThreadStatic]
    private static List<Tensor>? returnedBefore;

    /// <summary>
    /// Ends a backward: disposes <paramref name="gradOutput"/>'s handle (unless it is itself returned), keeps the
    /// returned gradients' handles until the next backward on this thread, and disposes those of the previous one.
    /// </summary>
    /// <returns><paramref name="gradients"/>, to return from the backward.</returns>
    internal static List<Tensor> Return(Tensor gradOutput, List<Tensor> gradients)
    {
        List<Tensor>? previous = returnedBefore;
        var kept = new List<Tensor>(gradients.Count);
        foreach (Tensor? g in gradients)
        {
            if (g is not null)
            {
                kept.Add(g);
            }
        }

        returnedBefore = kept;
        if (previous is not null)
        {
            foreach (Tensor t in previous)
            {
                t.Dispose();
            }
        }

        if (!kept.Exists(g => ReferenceEquals(g, gradOutput)))
        {
            gradOutput.Dispose();
        }

        return gradients;
    }
}
