using System.Text.Json;
using TorchSharp;

namespace Mistral.Peft.Quantization;

/// <summary>The parsed JSON of <c>P.weight.quant_state.bitsandbytes__nf4</c>.</summary>
internal sealed record QuantStateMetadata(int BlockSize, torch.ScalarType DType, long[] Shape, int? NestedBlockSize, float NestedOffset)
{
    public static QuantStateMetadata Parse(string json, string key)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{key}' is not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            JsonElement Req(string name) => root.TryGetProperty(name, out var v)
                ? v
                : throw new InvalidDataException($"'{key}' JSON lacks \"{name}\".");
            string quantType = Req("quant_type").GetString() ?? string.Empty;
            if (quantType != "nf4")
            {
                throw new InvalidDataException($"'{key}': quant_type must be \"nf4\"; got \"{quantType}\".");
            }

            int blockSize = Req("blocksize").GetInt32();
            if (!Nf4Options.IsPowerOfTwoInRange(blockSize, 32, 4096))
            {
                throw new InvalidDataException($"'{key}': blocksize must be a power of two from 32 to 4096; got {blockSize}.");
            }

            var dtype = Nf4Tensor.ParseDtype(Req("dtype").GetString() ?? string.Empty, $"'{key}'");
            var shape = Req("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            if (shape.Length == 0 || shape.Any(s => s <= 0))
            {
                throw new InvalidDataException($"'{key}': shape must be a non-empty list of positive sizes.");
            }

            int? nestedBlock = null;
            float offset = 0f;
            if (root.TryGetProperty("nested_blocksize", out var nb))
            {
                nestedBlock = nb.GetInt32();
                if (!Nf4Options.IsPowerOfTwoInRange(nestedBlock.Value, 64, 4096))
                {
                    throw new InvalidDataException($"'{key}': nested_blocksize must be a power of two from 64 to 4096; got {nestedBlock}.");
                }

                offset = (float)Req("nested_offset").GetDouble();
                string nestedDtype = Req("nested_dtype").GetString() ?? string.Empty;
                if (nestedDtype != "float32")
                {
                    throw new InvalidDataException($"'{key}': nested_dtype must be \"float32\"; got \"{nestedDtype}\".");
                }
            }

            return new QuantStateMetadata(blockSize, dtype, shape, nestedBlock, offset);
        }
    }
}
