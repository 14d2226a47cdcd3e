namespace Mistral.Peft.Quantization;

/// <summary>How <see cref="QuantizedModelLoader"/> materialises one module.</summary>
internal enum ModuleLoadKind
{
    /// <summary>Rebuilt in the dense dtype and filled from the checkpoint.</summary>
    Dense,

    /// <summary>A full-precision Linear weight quantized to NF4 while loading.</summary>
    Quantize,

    /// <summary>A Linear stored in bitsandbytes' 4-bit layout.</summary>
    Prequantized,
}
