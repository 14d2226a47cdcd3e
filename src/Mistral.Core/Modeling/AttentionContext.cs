using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>What every attention layer of one forward step shares: rotary tables, the mask and the cache step.</summary>
/// <param name="Cos">[B, T, head_dim] in the activations' dtype.</param>
/// <param name="Sin">[B, T, head_dim] in the activations' dtype.</param>
/// <param name="Mask">bool [B or 1, 1, T, S]; True = attend.</param>
/// <param name="Cache">The cache, or null for a plain forward.</param>
/// <param name="CacheStep">How the cache is used in this step (set when <paramref name="Cache"/> is).</param>
internal sealed record AttentionContext(Tensor Cos, Tensor Sin, Tensor Mask, KvCache? Cache, KvCacheStep? CacheStep);
