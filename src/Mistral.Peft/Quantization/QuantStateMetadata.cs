using System.Text.Json;
using TorchSharp;

namespace Mistral.Peft.Quantization;

/// <summary>The parsed JSON of <c>P.weight.quant_state.bitsandbytes__nf4</c>.</summary>
internal sealed record QuantStateMetadata(int BlockSize, torch.ScalarType DType, long[] Shape, int? NestedBlockSize, float NestedOffset)
{
    /// <summary>Parses the JSON; every error is an <see cref="InvalidDataException"/> naming <paramref name="source"/> (when given), the tensor key, the JSON field and what was expected.</summary>
    /// <param name="json">The UTF-8 decoded bytes of the quant-state tensor.</param>
    /// <param name="key">The tensor key, e.g. <c>model.layers.0.mlp.up_proj.weight.quant_state.bitsandbytes__nf4</c>.</param>
    /// <param name="source">The file or folder it came from; null leaves it out of messages.</param>
    public static QuantStateMetadata Parse(string json, string key, string? source = null)
    {
        string where = source is null ? $"'{key}'" : $"{source}: '{key}'";
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{where} is not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{where} must hold a JSON object; got {root.ValueKind}.");
            }

            InvalidDataException Bad(string name, string expected, JsonElement v) =>
                new($"{where}: \"{name}\" must be {expected}; got {v.GetRawText()}.");
            JsonElement Req(string name) => root.TryGetProperty(name, out var v)
                ? v
                : throw new InvalidDataException($"{where} JSON lacks \"{name}\".");
            string String(string name)
            {
                var v = Req(name);
                return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Bad(name, "a string", v);
            }

            int Int(JsonElement v, string name) =>
                v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Bad(name, "an integer", v);

            string quantType = String("quant_type");
            if (quantType != "nf4")
            {
                throw new InvalidDataException($"{where}: quant_type must be \"nf4\"; got \"{quantType}\".");
            }

            int blockSize = Int(Req("blocksize"), "blocksize");
            if (!Nf4Options.IsPowerOfTwoInRange(blockSize, 32, 4096))
            {
                throw new InvalidDataException($"{where}: blocksize must be a power of two from 32 to 4096; got {blockSize}.");
            }

            var dtype = Nf4Tensor.ParseDtype(String("dtype"), where);
            var shapeElement = Req("shape");
            if (shapeElement.ValueKind != JsonValueKind.Array)
            {
                throw Bad("shape", "a list of positive integers", shapeElement);
            }

            var shape = shapeElement.EnumerateArray()
                .Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long d) ? d : throw Bad("shape", "a list of positive integers", shapeElement))
                .ToArray();
            if (shape.Length == 0 || shape.Any(s => s <= 0))
            {
                throw new InvalidDataException($"{where}: shape must be a non-empty list of positive sizes.");
            }

            int? nestedBlock = null;
            float offset = 0f;
            if (root.TryGetProperty("nested_blocksize", out var nb) && nb.ValueKind != JsonValueKind.Null)
            {
                nestedBlock = Int(nb, "nested_blocksize");
                if (!Nf4Options.IsPowerOfTwoInRange(nestedBlock.Value, 64, 4096))
                {
                    throw new InvalidDataException($"{where}: nested_blocksize must be a power of two from 64 to 4096; got {nestedBlock}.");
                }

                var offsetElement = Req("nested_offset");
                offset = offsetElement.ValueKind == JsonValueKind.Number ? (float)offsetElement.GetDouble() : throw Bad("nested_offset", "a number", offsetElement);
                string nestedDtype = String("nested_dtype");
                if (nestedDtype != "float32")
                {
                    throw new InvalidDataException($"{where}: nested_dtype must be \"float32\"; got \"{nestedDtype}\".");
                }
            }

            return new QuantStateMetadata(blockSize, dtype, shape, nestedBlock, offset);
        }
    }
}
