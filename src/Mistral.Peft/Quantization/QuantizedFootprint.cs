namespace Mistral.Peft.Quantization;

/// <summary>Bytes a 4-bit model holds, split into the quantized projections and the rest.</summary>
/// <param name="QuantizedLayers">Number of quantized projections.</param>
/// <param name="QuantizedBytes">Bytes of the quantized projections (codes, scales, nested scales and map, offset).</param>
/// <param name="DenseBytes">Bytes of the unquantized parameters.</param>
public sealed record QuantizedFootprint(int QuantizedLayers, long QuantizedBytes, long DenseBytes)
{
    /// <summary>Total bytes.</summary>
    public long TotalBytes => QuantizedBytes + DenseBytes;
}
