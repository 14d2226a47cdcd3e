using Microsoft.Win32.SafeHandles;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Checkpoints;

/// <summary>
/// A safetensors file read tensor by tensor: the header is parsed and validated against the file length up front, and
/// each tensor is read with positional reads straight into a tensor's storage — no managed copy and no memory mapping,
/// so the process holds at most the tensors it asked for (a 5 GB shard is never resident at once).
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly SafeFileHandle handle;
    private readonly long dataStart;
    private bool disposed;

    private SafeTensorsFile(string path, SafeFileHandle handle, long dataStart,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        this.handle = handle;
        this.dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>Every tensor in the file, by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    /// <summary>The <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates a file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The header is malformed, names an unknown dtype, or points outside the file; the message names the file and tensor.</exception>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Safetensors file not found: '{path}'.", path);
        }

        byte[] headerBytes;
        long headerLength;
        long length;
        using (FileStream fs = File.OpenRead(path))
        {
            // The opened file's length: FileInfo.Length would be a symlink's own size, and the Hub cache's snapshots are symlinks.
            length = fs.Length;
            if (length < 8)
            {
                throw new InvalidDataException($"{path}: file is {length} bytes; a safetensors file has at least an 8-byte header length.");
            }

            Span<byte> prefix = stackalloc byte[8];
            fs.ReadExactly(prefix);
            headerLength = BitConverter.ToInt64(prefix);
            if (headerLength < 2 || headerLength > MaxHeaderBytes || headerLength > length - 8)
            {
                throw new InvalidDataException(
                    $"{path}: header claims {headerLength} bytes but the file has {length - 8} bytes after the length prefix (limit {MaxHeaderBytes}).");
            }

            headerBytes = new byte[headerLength];
            fs.ReadExactly(headerBytes);
        }

        long dataLength = length - 8 - headerLength;
        var (tensors, metadata) = ParseHeader(path, headerBytes, dataLength);
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return new SafeTensorsFile(path, handle, 8 + headerLength, tensors, metadata);
    }

    /// <summary>Reads a tensor, converted to <paramref name="dtype"/> (default: the stored one) on <paramref name="device"/> (default CPU).</summary>
    /// <exception cref="KeyNotFoundException">The file has no tensor of that name.</exception>
    public Tensor Load(string name, ScalarType? dtype = null, Device? device = null)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (!Tensors.TryGetValue(name, out SafeTensorInfo? info))
        {
            throw new KeyNotFoundException($"{Path}: no tensor named '{name}'.");
        }

        Tensor cpu = empty(info.Shape, info.DType, CPU);
        try
        {
            CopyInto(info, cpu);
            ScalarType target = dtype ?? info.DType;
            Device dev = device ?? CPU;
            if (target == info.DType && dev.type == DeviceType.CPU)
            {
                return cpu;
            }

            Tensor converted = cpu.to(target, dev);
            cpu.Dispose();
            return converted;
        }
        catch
        {
            cpu.Dispose();
            throw;
        }
    }

    /// <summary>The raw bytes of a tensor (a copy), e.g. for byte-exact comparisons.</summary>
    public byte[] ReadBytes(string name)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        SafeTensorInfo info = Tensors.TryGetValue(name, out var i) ? i : throw new KeyNotFoundException($"{Path}: no tensor named '{name}'.");
        var bytes = new byte[info.ByteLength];
        ReadExactly(bytes, dataStart + info.Begin);
        return bytes;
    }

    private void CopyInto(SafeTensorInfo info, Tensor destination)
    {
        if (info.ByteLength == 0)
        {
            return;
        }

        long elementSize = destination.ElementSize;
        long chunkElements = (1L << 30) / elementSize;
        using Tensor flat = destination.view(-1);
        long total = flat.shape[0];
        for (long first = 0; first < total; first += chunkElements)
        {
            long n = Math.Min(chunkElements, total - first);
            using Tensor part = flat.narrow(0, first, n);
            ReadExactly(part.bytes, dataStart + info.Begin + (first * elementSize));
        }
    }

    private void ReadExactly(Span<byte> destination, long offset)
    {
        while (destination.Length > 0)
        {
            int n = RandomAccess.Read(handle, destination, offset);
            if (n <= 0)
            {
                throw new EndOfStreamException($"{Path}: the file ended at offset {offset} while reading tensor data (was it truncated after opening?).");
            }

            destination = destination[n..];
            offset += n;
        }
    }

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: the header is not valid JSON ({e.Message}).", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{path}: the header must be a JSON object.");
            }

            int index = 0;
            string? previous = null;
            foreach (JsonProperty p in doc.RootElement.EnumerateObject())
            {
                // Names and strings are decoded lazily: invalid UTF-8 or a lone surrogate escape fails here, not at parse.
                string name;
                try
                {
                    name = p.Name;
                }
                catch (InvalidOperationException e)
                {
                    throw new InvalidDataException(
                        $"{path}: the name of header entry #{index} ({(previous is null ? "the first" : $"after tensor '{previous}'")}) is not valid UTF-8 or holds a lone surrogate escape ({e.Message}).", e);
                }

                index++;
                previous = name;
                try
                {
                    ParseProperty(path, p, name, dataLength, tensors, metadata);
                }
                catch (InvalidOperationException e)
                {
                    throw new InvalidDataException($"{path}: tensor '{name}': a string in its entry is not valid UTF-8 or holds a lone surrogate escape ({e.Message}).", e);
                }
            }
        }

        // Like the reference implementation: the tensors tile the data section exactly (no overlap, no gap, no tail).
        long expected = 0;
        foreach (SafeTensorInfo info in tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (info.Begin != expected)
            {
                throw new InvalidDataException(info.Begin < expected
                    ? $"{path}: tensor '{info.Name}' data_offsets [{info.Begin}, {info.End}] overlap another tensor's data."
                    : $"{path}: {info.Begin - expected} data bytes at offset {expected} belong to no tensor (before '{info.Name}').");
            }

            expected = info.End;
        }

        if (expected != dataLength)
        {
            throw new InvalidDataException($"{path}: the tensors cover {expected} data bytes but the file holds {dataLength}.");
        }

        return (tensors, metadata);
    }

    private static void ParseProperty(string path, JsonProperty p, string name, long dataLength,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        if (name == "__metadata__")
        {
            if (p.Value.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{path}: '__metadata__' must be an object of strings.");
            }

            foreach (JsonProperty m in p.Value.EnumerateObject())
            {
                metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String
                    ? m.Value.GetString()!
                    : throw new InvalidDataException($"{path}: '__metadata__.{m.Name}' must be a string.");
            }

            return;
        }

        if (tensors.ContainsKey(name))
        {
            throw new InvalidDataException($"{path}: tensor '{name}' appears twice in the header.");
        }

        tensors[name] = ParseEntry(path, p, dataLength);
    }

    private static SafeTensorInfo ParseEntry(string path, JsonProperty p, long dataLength)
    {
        string where = $"{path}: tensor '{p.Name}'";
        if (p.Value.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{where}: entry must be an object.");
        }

        if (!p.Value.TryGetProperty("dtype", out JsonElement dt) || dt.ValueKind != JsonValueKind.String)
        {
            throw new InvalidDataException($"{where}: missing string field 'dtype'.");
        }

        string dtypeName = dt.GetString()!;
        if (!SafeTensorDType.TryParse(dtypeName, out ScalarType type, out int size))
        {
            throw new InvalidDataException(
                $"{where}: unknown or unsupported dtype '{dtypeName}' (expected one of {string.Join(", ", SafeTensorDType.Supported)}).");
        }

        if (!p.Value.TryGetProperty("shape", out JsonElement sh) || sh.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"{where}: missing array field 'shape'.");
        }

        var shape = new long[sh.GetArrayLength()];
        long count = 1;
        int k = 0;
        foreach (JsonElement d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
            {
                throw new InvalidDataException($"{where}: 'shape' must hold non-negative integers.");
            }

            shape[k++] = dim;
            count = dim == 0 ? 0 : (count > long.MaxValue / dim ? throw new InvalidDataException($"{where}: shape overflows.") : count * dim);
        }

        if (!p.Value.TryGetProperty("data_offsets", out JsonElement off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2
            || off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end))
        {
            throw new InvalidDataException(
                $"{where}: 'data_offsets' must be [begin, end] (two integers); got {(off.ValueKind == JsonValueKind.Undefined ? "nothing" : off.GetRawText())}.");
        }

        if (begin < 0 || end < begin || end > dataLength)
        {
            throw new InvalidDataException(
                $"{where}: data_offsets [{begin}, {end}] lie outside the {dataLength} data bytes of the file (truncated file?).");
        }

        if (count > long.MaxValue / size || end - begin != count * size)
        {
            throw new InvalidDataException(
                $"{where}: {end - begin} data bytes do not match shape [{string.Join(", ", shape)}] of {dtypeName} ({count} × {size} bytes).");
        }

        return new SafeTensorInfo(p.Name, dtypeName, type, shape, begin, end);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        handle.Dispose();
    }
}
