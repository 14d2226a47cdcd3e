using static TorchSharp.torch;

namespace Mistral.Core.Checkpoints;

/// <summary>Maps safetensors dtype names to TorchSharp scalar types.</summary>
public static class SafeTensorDType
{
    private static readonly Dictionary<string, (ScalarType Type, int Size)> ByName = new(StringComparer.Ordinal)
    {
        ["F64"] = (ScalarType.Float64, 8),
        ["F32"] = (ScalarType.Float32, 4),
        ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2),
        ["I64"] = (ScalarType.Int64, 8),
        ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2),
        ["I8"] = (ScalarType.Int8, 1),
        ["U8"] = (ScalarType.Byte, 1),
        ["BOOL"] = (ScalarType.Bool, 1),
    };

    /// <summary>The names this library reads and writes.</summary>
    public static IReadOnlyCollection<string> Supported => ByName.Keys;

    /// <summary>Looks up a safetensors dtype name (e.g. <c>BF16</c>).</summary>
    public static bool TryParse(string name, out ScalarType type, out int elementSize)
    {
        if (ByName.TryGetValue(name, out var v))
        {
            type = v.Type;
            elementSize = v.Size;
            return true;
        }

        type = default;
        elementSize = 0;
        return false;
    }

    /// <summary>The safetensors name of a scalar type.</summary>
    /// <exception cref="NotSupportedException">The type has no safetensors name here.</exception>
    public static string NameOf(ScalarType type)
    {
        foreach (var (name, v) in ByName)
        {
            if (v.Type == type)
            {
                return name;
            }
        }

        throw new NotSupportedException($"dtype {type} cannot be stored in safetensors by this library.");
    }
}
