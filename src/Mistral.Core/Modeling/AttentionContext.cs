using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// The per-call state every attention layer of one forward step shares — rotary tables, the attention mask and the
/// KV-cache step. <see cref="MistralModel"/> builds it and passes it down as an argument, so one model can run forwards
/// on several threads at once (each with its own cache). Opaque to users.
/// </summary>
public sealed class AttentionContext
{
    internal AttentionContext(Tensor cos, Tensor sin, Tensor mask, KvCache? cache, KvCacheStep? cacheStep, bool isCausal = false)
    {
        IsCausal = isCausal;
        Cos = cos;
        Sin = sin;
        Mask = mask;
        Cache = cache;
        CacheStep = cacheStep;
    }

    /// <summary>[B, T, head_dim] in the activations' dtype.</summary>
    internal Tensor Cos { get; }

    /// <summary>[B, T, head_dim] in the activations' dtype.</summary>
    internal Tensor Sin { get; }

    /// <summary>bool [B or 1, 1, T, S]; True = attend.</summary>
    internal Tensor Mask { get; }

    /// <summary>
    /// True when <see cref="Mask"/> is exactly the causal mask of a square attention (no padding, no cache, the sequence
    /// within the sliding window): attention then asks libtorch for causal attention instead of passing the mask, which
    /// lets it pick the flash kernel (as transformers does when it drops the mask). Same result.
    /// </summary>
    internal bool IsCausal { get; }

    /// <summary>The cache, or null for a plain forward.</summary>
    internal KvCache? Cache { get; }

    /// <summary>How the cache is used in this step (set when <see cref="Cache"/> is).</summary>
    internal KvCacheStep? CacheStep { get; }
}
