using System.Text.Json;

namespace Mistral.Peft.Tests.Quantization;

/// <summary>Reader for tests/fixtures/nf4 (index.json + raw little-endian .bin arrays) written by tools/nf4/nf4_reference.py.</summary>
internal static class Nf4Fixtures
{
    public static string Directory { get; } = Locate();

    public static JsonDocument Index() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "index.json")));

    /// <summary>One case of index.json: its shape, block size, offset bits, quant-state JSON and array file names.</summary>
    public static Nf4Case Case(string name)
    {
        using var index = Index();
        JsonElement c = index.RootElement.GetProperty("cases").EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);
        return new Nf4Case(
            name,
            [.. c.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64())],
            c.GetProperty("blocksize").GetInt32(),
            c.GetProperty("offset_f32_bits").GetUInt32(),
            c.GetProperty("quant_state_json").GetString()!,
            c.GetProperty("files").EnumerateObject().ToDictionary(f => f.Name, f => f.Value.GetProperty("file").GetString()!));
    }

    public static byte[] Bytes(string file) => File.ReadAllBytes(Path.Combine(Directory, file));

    public static float[] Floats(string file)
    {
        var raw = Bytes(file);
        var result = new float[raw.Length / 4];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = BitConverter.ToSingle(raw, i * 4);
        }

        return result;
    }

    /// <summary>bfloat16 bit patterns widened to the float32 values they denote (exact).</summary>
    public static float[] BFloat16AsFloats(string file)
    {
        var raw = Bytes(file);
        var result = new float[raw.Length / 2];
        for (int i = 0; i < result.Length; i++)
        {
            int bits = BitConverter.ToUInt16(raw, i * 2) << 16;
            result[i] = BitConverter.Int32BitsToSingle(bits);
        }

        return result;
    }

    public static float[] PublishedDynamicMap() =>
        [.. File.ReadAllLines(Path.Combine(Directory, "published_dynamic_map.txt"))
            .Where(l => l.Length > 0 && l[0] != '#')
            .Select(l => float.Parse(l, System.Globalization.CultureInfo.InvariantCulture))];

    private static string Locate()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "fixtures", "nf4");
            if (File.Exists(Path.Combine(candidate, "index.json")))
            {
                return candidate;
            }

            dir = dir.Parent;
        }

        throw new DirectoryNotFoundException("tests/fixtures/nf4/index.json not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A parsed fixture case; <see cref="File"/> maps an array key (packed, absmax, …) to its file name.</summary>
internal sealed record Nf4Case(string Name, long[] Shape, int BlockSize, uint OffsetBits, string QuantStateJson, IReadOnlyDictionary<string, string> Files)
{
    public string File(string key) => Files[key];
}
