using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>Output of <see cref="MistralForCausalLM"/>; owns its tensors.</summary>
/// <param name="Logits">float32 [batch, seq (or 1), vocab].</param>
/// <param name="Loss">Mean shifted cross-entropy over labels ≠ −100 (scalar float32), when labels were given.</param>
public sealed record CausalLMOutput(Tensor Logits, Tensor? Loss) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        Logits.Dispose();
        Loss?.Dispose();
    }
}
