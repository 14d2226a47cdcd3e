using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Modeling;
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
    /// <remarks>
    /// In a non-strict load, tensors the checkpoint lacks get transformers' initialisation (linear and embedding weights
    /// from N(0, initializer_range²), RMSNorm weights 1, biases 0; see <see cref="CheckpointLoadOptions"/>), with a warning
    /// naming them; a missing tensor that cannot be initialised so fails the load.
    /// </remarks>
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

        if (missing.Count > 0)
        {
            InitializeMissing(module, targets, missing, reader.Folder, options);
        }

        if (missing.Count > 0 || unexpected.Count > 0)
        {
            logger.LogWarning(
                "Non-strict load of {Folder}: {Missing} missing tensor(s) initialised as transformers' _init_weights does (linear and embedding weights from N(0, {Range}²), RMSNorm weights 1, biases 0) ({MissingNames}); {Unexpected} unexpected tensor(s) ignored ({UnexpectedNames}).",
                reader.Folder, missing.Count, InitializerRange(module, options), string.Join(", ", missing), unexpected.Count, string.Join(", ", unexpected));
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

    private static double InitializerRange(nn.Module module, CheckpointLoadOptions options) =>
        options.InitializerRange ?? (module as MistralForCausalLM)?.Config.InitializerRange ?? 0.02;

    // A tensor the checkpoint lacks gets what transformers' MistralPreTrainedModel._init_weights gives it, never the
    // uninitialised memory the model was built with. Only tensors of Mistral.Core's own modules (not wrapped by another
    // library's module, e.g. a LoRA layer, whose initialisation differs) can be initialised; any other fails the load.
    private static void InitializeMissing(nn.Module module, Dictionary<string, Tensor> targets, List<string> missing, string folder,
        CheckpointLoadOptions options)
    {
        double range = InitializerRange(module, options);
        if (!(range >= 0) || double.IsInfinity(range))
        {
            throw new ArgumentOutOfRangeException(nameof(options), range, "CheckpointLoadOptions.InitializerRange must be a non-negative finite number.");
        }

        var modules = ModuleTree.NamedModules(module).ToDictionary(m => m.Name, m => m.Module, StringComparer.Ordinal);
        var plans = new List<(string Name, Tensor Target, char Kind)>();
        var impossible = new List<string>();
        foreach (string name in missing)
        {
            int dot = name.LastIndexOf('.');
            string ownerPath = dot < 0 ? string.Empty : name[..dot];
            string leaf = name[(dot + 1)..];
            bool ours = OwnedByCore(modules, ownerPath);
            nn.Module? owner = modules.GetValueOrDefault(ownerPath);
            char kind = !ours || !targets[name].is_floating_point() ? '?'
                : owner is RmsNorm && leaf == "weight" ? '1'
                : owner is Linear && leaf == "bias" ? '0'
                : owner is Linear or TokenEmbedding && leaf == "weight" ? 'N'
                : '?';
            if (kind == '?')
            {
                impossible.Add(name);
            }
            else
            {
                plans.Add((name, targets[name], kind));
            }
        }

        if (impossible.Count > 0)
        {
            throw new CheckpointMismatchException(folder, impossible, [], [],
                "the checkpoint lacks them and they are not weights of a Mistral.Core linear, embedding or RMSNorm layer, so they cannot be initialised as transformers would");
        }

        using var generator = new Generator(options.InitializationSeed, CPU);
        using (no_grad())
        {
            foreach (var (name, target, kind) in plans)
            {
                if (target.device.type == DeviceType.META)
                {
                    throw new InvalidOperationException($"Parameter '{name}' is on the meta device; build the model on a real device before loading.");
                }

                using var scope = NewDisposeScope();
                Tensor value = kind switch
                {
                    '1' => ones(target.shape, ScalarType.Float32),
                    '0' => zeros(target.shape, ScalarType.Float32),
                    _ => randn(target.shape, ScalarType.Float32, generator: generator).mul_(range),
                };
                if (kind == 'N' && name == "model.embed_tokens.weight" && module is MistralForCausalLM m
                    && m.Config.PadTokenId is int pad && pad >= 0 && pad < value.shape[0])
                {
                    value[pad].zero_();
                }

                target.copy_(value);
            }
        }
    }

    private static bool OwnedByCore(Dictionary<string, nn.Module> modules, string ownerPath)
    {
        var core = typeof(CheckpointLoader).Assembly;
        string path = ownerPath;
        while (true)
        {
            if (!modules.TryGetValue(path, out nn.Module? m) || m.GetType().Assembly != core)
            {
                return false;
            }

            if (path.Length == 0)
            {
                return true;
            }

            int dot = path.LastIndexOf('.');
            path = dot < 0 ? string.Empty : path[..dot];
        }
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
