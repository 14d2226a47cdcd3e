using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;

namespace Mistral.Peft.Quantization;

/// <summary>
/// The <c>quantization_config</c> object of a Hugging Face <c>config.json</c> for a bitsandbytes 4-bit model
/// (transformers' <c>BitsAndBytesConfig</c>), limited to NF4.
/// </summary>
public sealed record QuantizationConfig
{
    /// <summary>Whether the scales are double quantized (<c>bnb_4bit_use_double_quant</c>). Default true.</summary>
    public bool UseDoubleQuant { get; init; } = true;

    /// <summary>Compute dtype (<c>bnb_4bit_compute_dtype</c>). Default BFloat16.</summary>
    public torch.ScalarType ComputeDtype { get; init; } = torch.ScalarType.BFloat16;

    /// <summary>Modules left unquantized (<c>llm_int8_skip_modules</c>); null writes JSON null.</summary>
    public IReadOnlyList<string>? SkipModules { get; init; }

    /// <summary>The NF4 options this config implies (block size 64, nested block 256).</summary>
    /// <returns>Validated options.</returns>
    public Nf4Options ToNf4Options() => new Nf4Options { DoubleQuant = UseDoubleQuant, ComputeDtype = ComputeDtype }.Validate();

    /// <summary>The JSON object transformers writes (keys sorted as in its <c>to_json_string</c>).</summary>
    /// <returns>A new JSON object.</returns>
    public JsonObject ToJson()
    {
        JsonNode? skip = SkipModules is null ? null : new JsonArray([.. SkipModules.Select(s => (JsonNode?)JsonValue.Create(s))]);
        return new JsonObject
        {
            ["_load_in_4bit"] = true,
            ["_load_in_8bit"] = false,
            ["bnb_4bit_compute_dtype"] = Nf4Tensor.DtypeName(ComputeDtype),
            ["bnb_4bit_quant_storage"] = "uint8",
            ["bnb_4bit_quant_type"] = "nf4",
            ["bnb_4bit_use_double_quant"] = UseDoubleQuant,
            ["llm_int8_enable_fp32_cpu_offload"] = false,
            ["llm_int8_has_fp16_weight"] = false,
            ["llm_int8_skip_modules"] = skip,
            ["llm_int8_threshold"] = 6.0,
            ["load_in_4bit"] = true,
            ["load_in_8bit"] = false,
            ["quant_method"] = "bitsandbytes",
        };
    }

    /// <summary>Reads a <c>quantization_config</c> object; absent optional keys take transformers' defaults.</summary>
    /// <param name="json">The object.</param>
    /// <returns>The config.</returns>
    /// <exception cref="InvalidDataException">Not a bitsandbytes 4-bit NF4 config; the message names the key.</exception>
    public static QuantizationConfig FromJson(JsonElement json)
    {
        if (json.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException("quantization_config must be a JSON object.");
        }

        string? method = json.TryGetProperty("quant_method", out var m) ? m.GetString() : null;
        if (method != "bitsandbytes")
        {
            throw new InvalidDataException($"quantization_config.quant_method must be \"bitsandbytes\"; got \"{method}\".");
        }

        bool load4 = (json.TryGetProperty("load_in_4bit", out var l4) && l4.ValueKind == JsonValueKind.True)
            || (json.TryGetProperty("_load_in_4bit", out var l4b) && l4b.ValueKind == JsonValueKind.True);
        if (!load4)
        {
            throw new InvalidDataException("quantization_config.load_in_4bit must be true (only 4-bit models are supported).");
        }

        string quantType = json.TryGetProperty("bnb_4bit_quant_type", out var qt) ? qt.GetString() ?? "fp4" : "fp4";
        if (quantType != "nf4")
        {
            throw new InvalidDataException($"quantization_config.bnb_4bit_quant_type must be \"nf4\"; got \"{quantType}\".");
        }

        string storage = json.TryGetProperty("bnb_4bit_quant_storage", out var qs) ? qs.GetString() ?? "uint8" : "uint8";
        if (storage != "uint8")
        {
            throw new InvalidDataException($"quantization_config.bnb_4bit_quant_storage must be \"uint8\"; got \"{storage}\".");
        }

        bool dq = json.TryGetProperty("bnb_4bit_use_double_quant", out var d) && d.ValueKind == JsonValueKind.True;
        var compute = torch.ScalarType.Float32;
        if (json.TryGetProperty("bnb_4bit_compute_dtype", out var c) && c.ValueKind == JsonValueKind.String)
        {
            compute = Nf4Tensor.ParseDtype(c.GetString()!, "quantization_config.bnb_4bit_compute_dtype");
        }

        List<string>? skip = null;
        if (json.TryGetProperty("llm_int8_skip_modules", out var s) && s.ValueKind == JsonValueKind.Array)
        {
            skip = [.. s.EnumerateArray().Select(e => e.GetString() ?? throw new InvalidDataException("quantization_config.llm_int8_skip_modules must hold strings."))];
        }

        return new QuantizationConfig { UseDoubleQuant = dq, ComputeDtype = compute, SkipModules = skip };
    }
}
