using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Checkpoints;

/// <summary>Copies a Hugging Face checkpoint's tensors into a module's parameters and buffers, by state-dict name.</summary>
public static class CheckpointLoader
{
    /// <summary>
    /// Loads <paramref name="folder"/> into <paramref name="module"/>, converting each tensor to the parameter's dtype and
    /// device, and leaves the whole module tree in eval mode (as <c>from_pretrained</c> does; call <c>train()</c> to fine-tune).
    /// </summary>
    /// <returns>The names that were loaded.</returns>
    /// <exception cref="CheckpointMismatchException">Missing/unexpected tensors (when strict) or shape mismatches; all are listed.</exception>
    public static IReadOnlyList<string> Load(nn.Module module, string folder, CheckpointLoadOptions? options = null,
        IProgress<CheckpointLoadProgress>? progress = null, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(module);
        using CheckpointReader reader = CheckpointReader.Open(folder);
        return Load(module, reader, options, progress, logger, cancellationToken);
    }

    /// <summary>Loads from an open <see cref="CheckpointReader"/> and leaves the whole module tree in eval mode.</summary>
    public static IReadOnlyList<string> Load(nn.Module module, CheckpointReader reader, CheckpointLoadOptions? options = null,
        IProgress<CheckpointLoadProgress>? progress = null, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(reader);
        options ??= CheckpointLoadOptions.Default;
        logger ??= NullLogger.Instance;

        var targets = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in module.named_parameters())
        {
            targets[name] = p;
        }

        foreach (var (name, b) in module.named_buffers())
        {
            targets.TryAdd(name, b);
        }

        var missing = targets.Keys.Where(n => !reader.Contains(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var unexpected = reader.Names.Where(n => !targets.ContainsKey(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var misShaped = new List<string>();
        foreach (var (name, t) in targets)
        {
            if (reader.Contains(name))
            {
                long[] fileShape = reader.Info(name).Shape;
                if (!fileShape.SequenceEqual(t.shape))
                {
                    misShaped.Add($"{name}: checkpoint [{string.Join(", ", fileShape)}] vs model [{string.Join(", ", t.shape)}]");
                }
            }
        }

        if (misShaped.Count > 0 || (options.Strict && (missing.Count > 0 || unexpected.Count > 0)))
        {
            throw new CheckpointMismatchException(reader.Folder, missing, unexpected, misShaped);
        }

        if (missing.Count > 0 || unexpected.Count > 0)
        {
            logger.LogWarning("Non-strict load of {Folder}: {Missing} missing tensor(s) left as they are ({MissingNames}); {Unexpected} unexpected tensor(s) ignored ({UnexpectedNames}).",
                reader.Folder, missing.Count, string.Join(", ", missing), unexpected.Count, string.Join(", ", unexpected));
        }

        var loaded = new List<string>();
        long bytes = 0;
        var toLoad = targets.Where(kv => reader.Contains(kv.Key)).OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        using (no_grad())
        {
            foreach (var (name, target) in toLoad)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (target.device.type == DeviceType.META)
                {
                    throw new InvalidOperationException($"Parameter '{name}' is on the meta device; build the model on a real device before loading.");
                }

                using (Tensor source = reader.Load(name, target.dtype, target.device))
                {
                    target.copy_(source);
                }

                bytes += reader.Info(name).ByteLength;
                loaded.Add(name);
                progress?.Report(new CheckpointLoadProgress(loaded.Count, toLoad.Count, bytes, name));
            }
        }

        module.eval();
        logger.LogInformation("Loaded {Count} tensors ({Bytes:N0} bytes) from {Folder}.", loaded.Count, bytes, reader.Folder);
        return loaded;
    }

    /// <summary>Saves a module's parameters and persistent buffers as <c>model.safetensors</c> (atomically) with <c>{"format":"pt"}</c> metadata.</summary>
    public static void Save(nn.Module module, string folder, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(module);
        Directory.CreateDirectory(folder);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, t) in module.state_dict())
        {
            tensors[name] = t;
        }

        SafeTensorsWriter.Write(Path.Combine(folder, CheckpointReader.SingleFileName), tensors,
            new Dictionary<string, string> { ["format"] = "pt" }, cancellationToken);
    }
}
