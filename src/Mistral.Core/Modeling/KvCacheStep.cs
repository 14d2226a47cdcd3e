using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>How the attention layers read and write the cache during one forward step.</summary>
/// <param name="QueryIndex">int64 [T]: sequence indices of the new tokens.</param>
/// <param name="KeyIndex">int64 [S]: sequence index of every key the step attends over (−1 = empty).</param>
/// <param name="KeyValid">bool [B, S]: real-token flags of those keys.</param>
/// <param name="Slots">int64: the slots the new keys/values are written to.</param>
/// <param name="WriteFirst">True: write into the cache, then attend over its first <paramref name="Used"/> slots.
/// False (rolling prefill of several tokens): attend over all slots followed by the new keys, then write.</param>
/// <param name="Used">Number of cache slots attended over when writing first.</param>
/// <param name="KeepFrom">First new token that is written to the cache (earlier ones fall out of the window).</param>
internal sealed record KvCacheStep(Tensor QueryIndex, Tensor KeyIndex, Tensor KeyValid, Tensor Slots, bool WriteFirst, int Used, int KeepFrom);
