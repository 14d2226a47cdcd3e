using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// State shared by the checkpointed layers of one forward call: the managed handle of the input gradient the last
/// backward handed to libtorch. libtorch keeps its own reference to a returned gradient, so the managed handle is only
/// kept until the next layer's backward runs, then released; without this, every layer's input gradient would stay
/// alive until the caller's dispose scope ends (or, on a device's autograd thread that has no scope, until GC).
/// </summary>
internal sealed class CheckpointRun
{
    private Tensor? handedOff;

    /// <summary>Releases the previously handed-off gradient handle and remembers <paramref name="gradient"/> instead.</summary>
    internal void HandOff(Tensor? gradient) => Interlocked.Exchange(ref handedOff, gradient)?.Dispose();
}
