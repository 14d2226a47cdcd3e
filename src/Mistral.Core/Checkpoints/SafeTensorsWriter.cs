using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Checkpoints;

/// <summary>Writes safetensors files atomically (temporary file, then rename): a failure never leaves a partial file.</summary>
public static class SafeTensorsWriter
{
    /// <summary>Writes <paramref name="tensors"/> (in name order) with optional <c>__metadata__</c>.</summary>
    /// <exception cref="ArgumentException">A name repeats, is the reserved <c>__metadata__</c>, or a tensor's dtype has no safetensors name.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var entries = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, _) in entries)
        {
            if (name == "__metadata__")
            {
                throw new ArgumentException(
                    $"{path}: a tensor may not be named '__metadata__' (the name safetensors reserves for the metadata map; readers reject such a file).", nameof(tensors));
            }

            if (!seen.Add(name))
            {
                throw new ArgumentException($"Tensor name '{name}' appears twice.", nameof(tensors));
            }
        }

        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    json.WriteString(k, v);
                }

                json.WriteEndObject();
            }

            long offset = 0;
            foreach (var (name, t) in entries)
            {
                long bytes = t.NumberOfElements * t.ElementSize;
                json.WriteStartObject(name);
                json.WriteString("dtype", SafeTensorDType.NameOf(t.dtype));
                json.WriteStartArray("shape");
                foreach (long d in t.shape)
                {
                    json.WriteNumberValue(d);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }

            json.WriteEndObject();
        }

        // Pad the header with spaces to a multiple of 8 bytes, as the reference writer does.
        while (buffer.Length % 8 != 0)
        {
            buffer.WriteByte((byte)' ');
        }

        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string temp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                fs.Write(BitConverter.GetBytes(buffer.Length));
                buffer.Position = 0;
                buffer.CopyTo(fs);
                foreach (var (_, t) in entries)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    WriteData(fs, t);
                }

                fs.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }

    private static void WriteData(Stream stream, Tensor t)
    {
        if (t.NumberOfElements == 0)
        {
            return;
        }

        using var scope = NewDisposeScope();
        Tensor cpu = t.detach().cpu().contiguous();
        Tensor flat = cpu.view(-1);
        long chunkElements = (1L << 30) / cpu.ElementSize;
        long total = flat.shape[0];
        for (long first = 0; first < total; first += chunkElements)
        {
            using Tensor part = flat.narrow(0, first, Math.Min(chunkElements, total - first));
            stream.Write(part.bytes);
        }
    }
}
