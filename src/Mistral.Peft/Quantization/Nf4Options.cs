using TorchSharp;

namespace Mistral.Peft.Quantization;

/// <summary>
/// Options of NF4 quantization, mirroring bitsandbytes' 4-bit settings (<c>bnb_4bit_*</c>). Defaults are QLoRA's:
/// block size 64, double quantization of the scales with block 256, bf16 compute.
/// </summary>
public sealed record Nf4Options
{
    /// <summary>Elements per quantization block (absmax scale); a power of two from 32 to 4096. Default 64.</summary>
    public int BlockSize { get; init; } = 64;

    /// <summary>Whether the float32 block scales are quantized again to 8 bits (bitsandbytes' <c>compress_statistics</c> / <c>bnb_4bit_use_double_quant</c>). Default true.</summary>
    public bool DoubleQuant { get; init; } = true;

    /// <summary>Block size of the double quantization of the scales; a power of two from 64 to 4096. Default 256 (what bitsandbytes uses).</summary>
    public int NestedBlockSize { get; init; } = 256;

    /// <summary>The dtype a <see cref="Linear4bit"/> computes in (<c>bnb_4bit_compute_dtype</c>): BFloat16 (default), Float16 or Float32.</summary>
    public torch.ScalarType ComputeDtype { get; init; } = torch.ScalarType.BFloat16;

    /// <summary>Storage dtype of the packed codes (<c>bnb_4bit_quant_storage</c>); only Byte (uint8) is supported.</summary>
    public torch.ScalarType QuantStorage { get; init; } = torch.ScalarType.Byte;

    /// <summary>
    /// The dtype recorded as the weight's original dtype (what <see cref="Nf4Tensor.Dequantize()"/> returns and the
    /// quant state's <c>dtype</c>); null (default) takes the dtype of the tensor being quantized.
    /// </summary>
    public torch.ScalarType? WeightDtype { get; init; }

    /// <summary>Checks every option and throws naming the first invalid one.</summary>
    /// <returns>This instance, for chaining.</returns>
    /// <exception cref="ArgumentException">An option is out of range; the message names it.</exception>
    public Nf4Options Validate()
    {
        if (!IsPowerOfTwoInRange(BlockSize, 32, 4096))
        {
            throw new ArgumentException($"Nf4Options.BlockSize must be a power of two from 32 to 4096; got {BlockSize}.", nameof(BlockSize));
        }

        if (!IsPowerOfTwoInRange(NestedBlockSize, 64, 4096))
        {
            throw new ArgumentException($"Nf4Options.NestedBlockSize must be a power of two from 64 to 4096; got {NestedBlockSize}.", nameof(NestedBlockSize));
        }

        if (!IsFloatingDtype(ComputeDtype))
        {
            throw new ArgumentException($"Nf4Options.ComputeDtype must be BFloat16, Float16 or Float32; got {ComputeDtype}.", nameof(ComputeDtype));
        }

        if (QuantStorage != torch.ScalarType.Byte)
        {
            throw new ArgumentException($"Nf4Options.QuantStorage must be Byte (uint8); got {QuantStorage}.", nameof(QuantStorage));
        }

        if (WeightDtype is { } w && !IsFloatingDtype(w))
        {
            throw new ArgumentException($"Nf4Options.WeightDtype must be BFloat16, Float16, Float32 or null; got {w}.", nameof(WeightDtype));
        }

        return this;
    }

    internal static bool IsFloatingDtype(torch.ScalarType t) =>
        t is torch.ScalarType.BFloat16 or torch.ScalarType.Float16 or torch.ScalarType.Float32;

    internal static bool IsPowerOfTwoInRange(int value, int min, int max) =>
        value >= min && value <= max && (value & (value - 1)) == 0;
}
