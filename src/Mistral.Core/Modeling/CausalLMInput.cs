using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>Input of <see cref="MistralForCausalLM"/>.</summary>
/// <param name="InputIds">int64 [batch, seq] token ids.</param>
public sealed record CausalLMInput(Tensor InputIds)
{
    /// <summary>[batch, seq] 1 for real tokens, 0 for padding (left or right). With a <see cref="Cache"/> it covers only the new tokens.</summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>
    /// int64 [batch, seq] rotary positions. When null they are derived from the attention mask (<c>cumsum − 1</c>, so a
    /// left-padded row starts at 0 at its first real token), or 0..seq−1 without a mask, or continue from the cache.
    /// </summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>int64 [batch, seq] labels for the loss (the model shifts them); −100 is ignored.</summary>
    public Tensor? Labels { get; init; }

    /// <summary>A KV cache to read and extend (incremental decoding); null for a plain forward.</summary>
    public KvCache? Cache { get; init; }

    /// <summary>Compute logits only for the last position (generation); the loss needs all positions.</summary>
    public bool LastPositionLogitsOnly { get; init; }

    /// <summary>
    /// Compute only the loss (training): the full float32 logits [batch, seq, vocab] are never materialised. With the
    /// model's own bias-free lm_head the loss and its gradients come from a chunked, fused lm_head + cross-entropy that
    /// holds one chunk of logits at a time (about 64 MiB of float32) and recomputes them in backward; a replaced lm_head
    /// (LoRA, 4-bit) takes the ordinary path, whose logits are freed at the end of the forward. Same loss and gradients
    /// as without it, up to float32 summation order. The output has no logits: <see cref="CausalLMOutput.HasLogits"/> is
    /// false and reading <see cref="CausalLMOutput.Logits"/> throws. Requires <see cref="Labels"/>.
    /// </summary>
    public bool LossOnly { get; init; }
}
