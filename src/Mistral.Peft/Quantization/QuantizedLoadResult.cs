using Mistral.Core.Modeling;

namespace Mistral.Peft.Quantization;

/// <summary>What <see cref="QuantizedModelLoader"/> built and what it cost. The caller owns (and disposes) <see cref="Model"/>.</summary>
/// <param name="Model">The 4-bit model, in eval mode, every tensor on the requested device.</param>
/// <param name="Prequantized">True when the folder held a bitsandbytes 4-bit checkpoint; false when it was quantized while loading.</param>
/// <param name="QuantizedLayers">Number of <see cref="Linear4bit"/> layers.</param>
/// <param name="DenseTensors">Number of parameters and buffers outside the <see cref="Linear4bit"/> layers.</param>
/// <param name="QuantizedBytes">Bytes of the tensors of the <see cref="Linear4bit"/> layers (codes, scales, nested scales, maps, offsets).</param>
/// <param name="DenseBytes">Bytes of every other parameter and buffer (embeddings, norms, <c>lm_head</c>, skipped projections).</param>
/// <param name="CheckpointBytesRead">Bytes of checkpoint data read.</param>
/// <param name="LargestTransientBytes">The largest checkpoint tensor materialised at once (the extra memory a step needs on top of the model, before quantization).</param>
/// <param name="Elapsed">Wall time of the whole load.</param>
public sealed record QuantizedLoadResult(
    MistralForCausalLM Model,
    bool Prequantized,
    int QuantizedLayers,
    int DenseTensors,
    long QuantizedBytes,
    long DenseBytes,
    long CheckpointBytesRead,
    long LargestTransientBytes,
    TimeSpan Elapsed)
{
    /// <summary>Bytes of all parameters and buffers of the model.</summary>
    public long TotalBytes => QuantizedBytes + DenseBytes;
}
