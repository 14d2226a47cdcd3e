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

    /// <summary>Reads a <c>quantization_config</c> object; absent (or null) optional keys take transformers' defaults.</summary>
    /// <param name="json">The object.</param>
    /// <returns>The config.</returns>
    /// <exception cref="InvalidDataException">Not a bitsandbytes 4-bit NF4 config, or a key holds the wrong JSON type; the message names the key and what was expected.</exception>
    public static QuantizationConfig FromJson(JsonElement json)
    {
        if (json.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"quantization_config must be a JSON object; got {json.ValueKind}.");
        }

        string? method = OptionalString(json, "quant_method");
        if (method != "bitsandbytes")
        {
            throw new InvalidDataException($"quantization_config.quant_method must be \"bitsandbytes\"; got {(method is null ? "nothing" : $"\"{method}\"")}.");
        }

        bool? load4Public = OptionalBool(json, "load_in_4bit");
        bool? load4Private = OptionalBool(json, "_load_in_4bit");
        if (load4Public != true && load4Private != true)
        {
            throw new InvalidDataException("quantization_config.load_in_4bit must be true (only 4-bit models are supported).");
        }

        string quantType = OptionalString(json, "bnb_4bit_quant_type") ?? "fp4";
        if (quantType != "nf4")
        {
            throw new InvalidDataException($"quantization_config.bnb_4bit_quant_type must be \"nf4\"; got \"{quantType}\".");
        }

        string storage = OptionalString(json, "bnb_4bit_quant_storage") ?? "uint8";
        if (storage != "uint8")
        {
            throw new InvalidDataException($"quantization_config.bnb_4bit_quant_storage must be \"uint8\"; got \"{storage}\".");
        }

        bool dq = OptionalBool(json, "bnb_4bit_use_double_quant") ?? false;
        var compute = torch.ScalarType.Float32;
        string? computeName = OptionalString(json, "bnb_4bit_compute_dtype");
        if (computeName is not null)
        {
            compute = Nf4Tensor.ParseDtype(computeName, "quantization_config.bnb_4bit_compute_dtype");
        }

        List<string>? skip = null;
        if (json.TryGetProperty("llm_int8_skip_modules", out var s) && s.ValueKind != JsonValueKind.Null)
        {
            if (s.ValueKind != JsonValueKind.Array)
            {
                throw WrongType("llm_int8_skip_modules", "a list of strings or null", s);
            }

            skip = [.. s.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw WrongType("llm_int8_skip_modules", "a list of strings or null", s))];
        }

        return new QuantizationConfig { UseDoubleQuant = dq, ComputeDtype = compute, SkipModules = skip };
    }

    private static InvalidDataException WrongType(string key, string expected, JsonElement value) =>
        new($"quantization_config.{key} must be {expected}; got {value.GetRawText()}.");

    private static string? OptionalString(JsonElement json, string key)
    {
        if (!json.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw WrongType(key, "a string", v);
    }

    private static bool? OptionalBool(JsonElement json, string key)
    {
        if (!json.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw WrongType(key, "true or false", v),
        };
    }
}
