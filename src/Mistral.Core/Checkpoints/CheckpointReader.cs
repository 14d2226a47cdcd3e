using System.Text.Json;
using static TorchSharp.torch;

namespace Mistral.Core.Checkpoints;

/// <summary>
/// The tensors of a Hugging Face checkpoint folder: a single <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c> (<c>weight_map</c>: name → file). Shards are opened lazily and read tensor by tensor.
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    /// <summary>The single-file checkpoint name.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The shard index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, string> fileOf;
    private readonly Dictionary<string, SafeTensorsFile> open = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SafeTensorInfo> infos = new(StringComparer.Ordinal);
    private bool disposed;

    private CheckpointReader(string folder, Dictionary<string, string> fileOf)
    {
        Folder = folder;
        this.fileOf = fileOf;
    }

    /// <summary>The folder.</summary>
    public string Folder { get; }

    /// <summary>Every tensor name in the checkpoint.</summary>
    public IReadOnlyCollection<string> Names => fileOf.Keys;

    /// <summary>Opens a checkpoint folder; every shard is checked to exist and its header validated.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">Neither <c>model.safetensors</c> nor the index exists, or a shard the index names is missing.</exception>
    /// <exception cref="InvalidDataException">The index or a shard header is malformed, or a shard lacks a tensor the index assigns to it.</exception>
    public static CheckpointReader Open(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Checkpoint folder not found: '{folder}'.");
        }

        string single = Path.Combine(folder, SingleFileName);
        string index = Path.Combine(folder, IndexFileName);
        var fileOf = new Dictionary<string, string>(StringComparer.Ordinal);
        if (File.Exists(index))
        {
            ReadIndex(index, folder, fileOf);
        }
        else if (File.Exists(single))
        {
            using SafeTensorsFile f = SafeTensorsFile.Open(single);
            foreach (string name in f.Tensors.Keys)
            {
                fileOf[name] = single;
            }
        }
        else
        {
            throw new FileNotFoundException(
                $"No checkpoint in '{folder}': expected '{SingleFileName}' or '{IndexFileName}'.", single);
        }

        var reader = new CheckpointReader(folder, fileOf);
        try
        {
            foreach (string file in fileOf.Values.Distinct())
            {
                SafeTensorsFile f = reader.GetFile(file);
                foreach (var (name, info) in f.Tensors)
                {
                    if (fileOf.TryGetValue(name, out string? assigned) && assigned == file)
                    {
                        reader.infos[name] = info;
                    }
                }
            }

            foreach (var (name, file) in fileOf)
            {
                if (!reader.infos.ContainsKey(name))
                {
                    throw new InvalidDataException($"{index}: tensor '{name}' is mapped to '{Path.GetFileName(file)}', which does not contain it.");
                }
            }

            return reader;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    /// <summary>The header entry of a tensor.</summary>
    public SafeTensorInfo Info(string name) =>
        infos.TryGetValue(name, out var i) ? i : throw new KeyNotFoundException($"Checkpoint '{Folder}' has no tensor '{name}'.");

    /// <summary>Whether the checkpoint has a tensor.</summary>
    public bool Contains(string name) => fileOf.ContainsKey(name);

    /// <summary>Loads a tensor converted to <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public Tensor Load(string name, ScalarType? dtype = null, Device? device = null)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        string file = fileOf.TryGetValue(name, out var f) ? f : throw new KeyNotFoundException($"Checkpoint '{Folder}' has no tensor '{name}'.");
        return GetFile(file).Load(name, dtype, device);
    }

    private SafeTensorsFile GetFile(string path)
    {
        if (!open.TryGetValue(path, out SafeTensorsFile? f))
        {
            f = SafeTensorsFile.Open(path);
            open[path] = f;
        }

        return f;
    }

    private static void ReadIndex(string index, string folder, Dictionary<string, string> fileOf)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(index));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{index}: not valid JSON ({e.Message}).", e);
        }

        using (doc)
        {
            try
            {
                ReadWeightMap(doc, index, folder, fileOf);
            }
            catch (InvalidOperationException e)
            {
                throw new InvalidDataException($"{index}: a key or string is not valid UTF-8 or holds a lone surrogate escape ({e.Message}).", e);
            }
        }
    }

    private static void ReadWeightMap(JsonDocument doc, string index, string folder, Dictionary<string, string> fileOf)
    {
        if (doc.RootElement.ValueKind != JsonValueKind.Object
            || !doc.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{index}: missing object field 'weight_map'.");
        }

        var missing = new SortedSet<string>(StringComparer.Ordinal);
        foreach (JsonProperty p in map.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
            {
                throw new InvalidDataException($"{index}: weight_map['{p.Name}'] must be a file name.");
            }

            string shard = p.Value.GetString()!;
            if (shard.Contains('/') || shard.Contains('\\') || shard == ".." )
            {
                throw new InvalidDataException($"{index}: weight_map['{p.Name}'] = '{shard}' must be a file name inside the folder.");
            }

            string path = Path.Combine(folder, shard);
            if (!File.Exists(path))
            {
                missing.Add(shard);
            }

            fileOf[p.Name] = path;
        }

        if (missing.Count > 0)
        {
            throw new FileNotFoundException(
                $"{index}: missing shard file(s) in '{folder}': {string.Join(", ", missing)}.", Path.Combine(folder, missing.Min!));
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        foreach (SafeTensorsFile f in open.Values)
        {
            f.Dispose();
        }

        open.Clear();
    }
}
