namespace Mistral.Peft.Quantization;

/// <summary>The state-dict key suffixes bitsandbytes writes for a 4-bit Linear weight <c>P.weight</c>.</summary>
public static class BitsAndBytesKeys
{
    /// <summary>Packed uint8 codes: <c>P.weight</c>.</summary>
    public const string Weight = "weight";

    /// <summary>Block scales (uint8 with double quantization, else float32): <c>P.weight.absmax</c>.</summary>
    public const string Absmax = "weight.absmax";

    /// <summary>The 16 NF4 code values (float32): <c>P.weight.quant_map</c>.</summary>
    public const string QuantMap = "weight.quant_map";

    /// <summary>Scales of the double quantization (float32): <c>P.weight.nested_absmax</c>.</summary>
    public const string NestedAbsmax = "weight.nested_absmax";

    /// <summary>The 256-value dynamic map (float32): <c>P.weight.nested_quant_map</c>.</summary>
    public const string NestedQuantMap = "weight.nested_quant_map";

    /// <summary>UTF-8 JSON bytes of the non-tensor quant state: <c>P.weight.quant_state.bitsandbytes__nf4</c>.</summary>
    public const string QuantState = "weight.quant_state.bitsandbytes__nf4";

    /// <summary>Joins a module prefix and a key suffix with a dot (an empty prefix gives the suffix).</summary>
    /// <param name="prefix">Module prefix, e.g. <c>model.layers.0.self_attn.q_proj</c>.</param>
    /// <param name="suffix">One of the constants of this class.</param>
    /// <returns>The full state-dict key.</returns>
    public static string Key(string prefix, string suffix) =>
        string.IsNullOrEmpty(prefix) ? suffix : prefix + "." + suffix;
}
