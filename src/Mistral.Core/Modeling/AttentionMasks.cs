using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Builds the boolean attention mask (True = attend) of causal, sliding-window attention over a padded batch.
/// </summary>
/// <remarks>
/// A query at sequence index i sees a key at index j iff <c>j ≤ i</c>, <c>i − W &lt; j</c> (exactly W keys, itself
/// included, as in transformers and xformers) and the key is a real token. A padding query of a left-padded row may see no
/// key at all: libtorch's <c>scaled_dot_product_attention</c> (2.5 and later) then returns zeros, exactly as Hugging Face
/// relies on, so even the logits at padding positions (which HF's loss uses to predict a row's first real token) match.
/// Indices are positions in the padded sequence ("cache positions"); with left padding they differ from the
/// rotary position ids by a per-row constant, so the window is the same.
/// </remarks>
public static class AttentionMasks
{
    /// <summary>Builds a mask [batch or 1, 1, queries, keys].</summary>
    /// <param name="queryIndex">int64 [queries]: sequence index of each query.</param>
    /// <param name="keyIndex">int64 [keys]: sequence index of each key; negative marks an empty cache slot.</param>
    /// <param name="keyValid">bool [batch, keys]: false for padding; null when every key is real.</param>
    /// <param name="slidingWindow">W, or null for full causal attention.</param>
    public static Tensor Build(Tensor queryIndex, Tensor keyIndex, Tensor? keyValid, int? slidingWindow)
    {
        using var scope = NewDisposeScope();
        Tensor q = queryIndex.view(-1, 1);
        Tensor k = keyIndex.view(1, -1);
        Tensor allowed = k.le(q).logical_and(k.ge(0));
        if (slidingWindow is int w)
        {
            allowed = allowed.logical_and(k.gt(q - w));
        }

        Tensor mask = allowed.unsqueeze(0).unsqueeze(0); // [1, 1, Q, K]
        if (keyValid is not null)
        {
            mask = mask.logical_and(keyValid.to_type(ScalarType.Bool).unsqueeze(1).unsqueeze(1)); // [B, 1, Q, K]
        }

        return mask.MoveToOuterDisposeScope();
    }
}
