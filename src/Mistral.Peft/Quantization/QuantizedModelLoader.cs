using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;
using DenseLinear = Mistral.Core.Modeling.Linear;

namespace Mistral.Peft.Quantization;

/// <summary>
/// Builds a 4-bit (NF4) <see cref="MistralForCausalLM"/> from a Hugging Face checkpoint folder without ever holding the
/// full-precision model: the model is created on the meta device, then module by module each projection weight is
/// read tensor by tensor straight to the target device, quantized into a <see cref="Linear4bit"/> and the full-precision
/// tensor freed, while embeddings, norms and <c>lm_head</c> are rebuilt in the dense dtype and filled. Peak memory is
/// the 4-bit model plus one checkpoint tensor. A folder whose <c>config.json</c> has <c>quantization_config</c> is a
/// bitsandbytes 4-bit checkpoint (see <see cref="QuantizedCheckpoint"/>) and is read as such.
/// </summary>
public static class QuantizedModelLoader
{
    /// <summary>The model configuration file of a checkpoint folder.</summary>
    public const string ConfigFileName = "config.json";

    /// <summary>The <c>config.json</c> field that marks a pre-quantized checkpoint.</summary>
    public const string QuantizationConfigField = "quantization_config";

    /// <summary>
    /// Loads <paramref name="folder"/> as a 4-bit model: a full-precision checkpoint (bf16/fp16/fp32) is quantized while
    /// loading; a folder whose <c>config.json</c> has <c>quantization_config</c> is loaded as a pre-quantized
    /// bitsandbytes checkpoint (<see cref="LoadPrequantized"/>).
    /// </summary>
    /// <param name="folder">Folder with <c>config.json</c> and <c>model.safetensors</c> or a sharded index.</param>
    /// <param name="options">Options (validated); null means the defaults.</param>
    /// <param name="progress">Receives one report per checkpoint tensor read.</param>
    /// <param name="logger">Logger; null logs nothing.</param>
    /// <param name="cancellationToken">Checked before every module.</param>
    /// <returns>The model, in eval mode, and what it cost.</returns>
    /// <exception cref="CheckpointMismatchException">Missing, unexpected or mis-shaped tensors; all are listed at once.</exception>
    /// <exception cref="InvalidDataException">config.json or a quantization state is invalid; the message names the file and field.</exception>
    public static QuantizedLoadResult Load(string folder, QuantizedLoadOptions? options = null, IProgress<CheckpointLoadProgress>? progress = null,
        ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options = (options ?? new QuantizedLoadOptions()).Validate();
        var (config, quant, _) = ReadConfig(folder);
        return Run(folder, config, quant, options, progress, logger ?? NullLogger.Instance, cancellationToken);
    }

    /// <summary>
    /// Loads a bitsandbytes 4-bit checkpoint (what transformers' <c>save_pretrained</c> writes for a 4-bit model, or
    /// <see cref="QuantizedCheckpoint.Save(MistralForCausalLM, string, CancellationToken)"/>): every Linear with <c>P.weight.quant_state.bitsandbytes__nf4</c> becomes a
    /// <see cref="Linear4bit"/> holding the stored codes bit for bit; the other tensors are loaded in
    /// <see cref="QuantizedLoadOptions.DType"/>.
    /// </summary>
    /// <param name="folder">Folder with <c>config.json</c> (with <c>quantization_config</c>) and the safetensors.</param>
    /// <param name="options">Options (validated); null means the defaults. <see cref="QuantizedLoadOptions.Nf4"/> is not used.</param>
    /// <param name="progress">Receives one report per checkpoint tensor read.</param>
    /// <param name="logger">Logger; null logs nothing.</param>
    /// <param name="cancellationToken">Checked before every module.</param>
    /// <returns>The model, in eval mode, and what it cost.</returns>
    /// <exception cref="InvalidDataException">config.json lacks <c>quantization_config</c>, or its <c>quant_method</c> is not bitsandbytes, or <c>bnb_4bit_quant_type</c> is not nf4, or a quantization state is invalid; the message names the field or key.</exception>
    /// <exception cref="CheckpointMismatchException">Missing, unexpected or mis-shaped tensors; all are listed at once.</exception>
    public static QuantizedLoadResult LoadPrequantized(string folder, QuantizedLoadOptions? options = null, IProgress<CheckpointLoadProgress>? progress = null,
        ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options = (options ?? new QuantizedLoadOptions()).Validate();
        var (config, quant, path) = ReadConfig(folder);
        if (quant is null)
        {
            throw new InvalidDataException(
                $"{path}: no '{QuantizationConfigField}' field, so this is not a pre-quantized checkpoint (QuantizedModelLoader.Load quantizes a full-precision one while loading).");
        }

        return Run(folder, config, quant, options, progress, logger ?? NullLogger.Instance, cancellationToken);
    }

    /// <summary>
    /// The bytes the 4-bit model of <paramref name="config"/> holds when loaded from a full-precision checkpoint with
    /// <paramref name="options"/>: per quantized projection <see cref="Nf4Tensor.StorageBytesFor"/> plus the 4-byte
    /// nested offset buffer (with double quantization), and every other parameter in <see cref="QuantizedLoadOptions.DType"/>.
    /// Nothing is allocated.
    /// </summary>
    /// <param name="config">The architecture.</param>
    /// <param name="options">Options (validated); null means the defaults.</param>
    /// <returns>The footprint.</returns>
    public static QuantizedFootprint EstimateBytes(MistralConfig config, QuantizedLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        options = (options ?? new QuantizedLoadOptions()).Validate();
        using var model = new MistralForCausalLM(config, options.DType, META);
        int layers = 0;
        long quantized = 0;
        long dense = 0;
        long elementSize = ElementSize(options.DType);
        foreach (var (name, module) in ModuleTree.NamedModules(model))
        {
            if (module is DenseLinear linear && IsQuantizationTarget(name, options.SkipModules))
            {
                layers++;
                quantized += Nf4Tensor.StorageBytesFor(linear.InFeatures * linear.OutFeatures, options.Nf4)
                    + (options.Nf4.DoubleQuant ? 4 : 0)
                    + (linear.Bias is null ? 0 : linear.OutFeatures * elementSize);
                continue;
            }

            foreach (var (_, p) in module.named_parameters(recurse: false))
            {
                dense += p.numel() * elementSize;
            }
        }

        return new QuantizedFootprint(layers, quantized, dense);
    }

    /// <summary>
    /// Whether a Linear named <paramref name="moduleName"/> is quantized: everything except <c>lm_head</c> and the
    /// modules matched by <paramref name="skipModules"/> (whole dotted segments: equal, prefix, suffix or infix).
    /// </summary>
    /// <param name="moduleName">Dotted module name.</param>
    /// <param name="skipModules">Names to leave unquantized.</param>
    /// <returns>True when the module is quantized.</returns>
    public static bool IsQuantizationTarget(string moduleName, IReadOnlyList<string> skipModules)
    {
        ArgumentNullException.ThrowIfNull(moduleName);
        ArgumentNullException.ThrowIfNull(skipModules);
        return !Matches(moduleName, "lm_head") && !skipModules.Any(s => Matches(moduleName, s));
    }

    private static bool Matches(string name, string key) =>
        name == key
        || name.StartsWith(key + ".", StringComparison.Ordinal)
        || name.EndsWith("." + key, StringComparison.Ordinal)
        || name.Contains("." + key + ".", StringComparison.Ordinal);

    private static (MistralConfig Config, QuantizationConfig? Quant, string Path) ReadConfig(string folder)
    {
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Checkpoint folder not found: '{folder}'.");
        }

        string path = Path.Combine(folder, ConfigFileName);
        var config = MistralConfig.FromFile(path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        if (!doc.RootElement.TryGetProperty(QuantizationConfigField, out var q) || q.ValueKind == JsonValueKind.Null)
        {
            return (config, null, path);
        }

        try
        {
            return (config, QuantizationConfig.FromJson(q), path);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    private static QuantizedLoadResult Run(string folder, MistralConfig config, QuantizationConfig? quant, QuantizedLoadOptions options,
        IProgress<CheckpointLoadProgress>? progress, ILogger logger, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        Device device = options.Device ?? CPU;
        using CheckpointReader reader = CheckpointReader.Open(folder);
        var model = new MistralForCausalLM(config, options.DType, META);
        try
        {
            var steps = Plan(model, reader, quant is not null, options);
            Check(reader, steps);
            var computeDtype = quant is null ? options.Nf4.ComputeDtype : options.PrequantizedComputeDtype ?? quant.ComputeDtype;
            int total = steps.Sum(s => s.Tensors.Count);
            int done = 0;
            long bytesRead = 0;
            long largest = 0;
            using (no_grad())
            {
                foreach (var step in steps)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    nn.Module replacement = step.Kind switch
                    {
                        ModuleLoadKind.Quantize => QuantizeStep(step, reader, options, device),
                        ModuleLoadKind.Prequantized => PrequantizedStep(step, reader, device, computeDtype),
                        _ => options.EmbeddingsOnHost && step.Module is TokenEmbedding && device.type == DeviceType.CUDA
                            ? PinnedEmbedding(DenseStep(step, reader, config, options.DType, CPU), device, logger)
                            : DenseStep(step, reader, config, options.DType, device),
                    };
                    replacement.eval();
                    using (ModuleTree.Replace(model, step.Name, replacement))
                    {
                    }

                    foreach (var (_, key) in step.Tensors)
                    {
                        long b = reader.Info(key).ByteLength;
                        bytesRead += b;
                        long converted = step.Kind == ModuleLoadKind.Prequantized ? b : reader.Info(key).ElementCount * ElementSize(options.DType);
                        largest = Math.Max(largest, Math.Max(b, converted));
                        done++;
                        progress?.Report(new CheckpointLoadProgress(done, total, bytesRead, key));
                    }
                }
            }

            ThrowIfAnyOnMeta(model);
            model.eval();
            var (layers, denseCount, qBytes, dBytes) = Measure(model);
            clock.Stop();
            logger.LogInformation(
                "Loaded {Folder} as a 4-bit model ({Mode}): {Layers} NF4 layers ({QBytes:N0} bytes), {Dense} dense tensors ({DBytes:N0} bytes), {Read:N0} checkpoint bytes read in {Seconds:F2} s.",
                folder, quant is null ? "quantized while loading" : "pre-quantized", layers, qBytes, denseCount, dBytes, bytesRead, clock.Elapsed.TotalSeconds);
            return new QuantizedLoadResult(model, quant is not null, layers, denseCount, qBytes, dBytes, bytesRead, largest, clock.Elapsed);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static List<ModuleLoadStep> Plan(MistralForCausalLM model, CheckpointReader reader, bool prequantized, QuantizedLoadOptions options)
    {
        var steps = new List<ModuleLoadStep>();
        foreach (var (name, module) in ModuleTree.NamedModules(model).ToList())
        {
            var locals = module.named_parameters(recurse: false).Select(p => p.name)
                .Concat(module.named_buffers(recurse: false).Select(b => b.name)).ToList();
            if (locals.Count == 0)
            {
                continue;
            }

            string Full(string local) => name.Length == 0 ? local : name + "." + local;
            if (module is DenseLinear linear)
            {
                string stateKey = BitsAndBytesKeys.Key(name, BitsAndBytesKeys.QuantState);
                if (prequantized && reader.Contains(stateKey))
                {
                    steps.Add(new ModuleLoadStep(name, module, ModuleLoadKind.Prequantized, PrequantizedKeys(name, linear, reader)));
                    continue;
                }

                if (!prequantized && IsQuantizationTarget(name, options.SkipModules))
                {
                    steps.Add(new ModuleLoadStep(name, module, ModuleLoadKind.Quantize, [.. locals.Select(l => KeyValuePair.Create(l, Full(l)))]));
                    continue;
                }
            }

            steps.Add(new ModuleLoadStep(name, module, ModuleLoadKind.Dense, [.. locals.Select(l => KeyValuePair.Create(l, Full(l)))]));
        }

        return steps;
    }

    private static List<KeyValuePair<string, string>> PrequantizedKeys(string name, DenseLinear linear, CheckpointReader reader)
    {
        string stateKey = BitsAndBytesKeys.Key(name, BitsAndBytesKeys.QuantState);
        string json;
        using (var qs = reader.Load(stateKey))
        {
            if (qs.dtype != ScalarType.Byte)
            {
                throw new InvalidDataException($"{reader.Folder}: '{stateKey}' must be uint8 JSON bytes; got {qs.dtype}.");
            }

            json = Encoding.UTF8.GetString(qs.data<byte>().ToArray());
        }

        var meta = QuantStateMetadata.Parse(json, stateKey, reader.Folder);
        var suffixes = new List<string> { BitsAndBytesKeys.Weight, BitsAndBytesKeys.Absmax, BitsAndBytesKeys.QuantMap };
        if (meta.NestedBlockSize is not null)
        {
            suffixes.Add(BitsAndBytesKeys.NestedAbsmax);
            suffixes.Add(BitsAndBytesKeys.NestedQuantMap);
        }

        suffixes.Add(BitsAndBytesKeys.QuantState);
        if (linear.Bias is not null)
        {
            suffixes.Add("bias");
        }

        return [.. suffixes.Select(s => KeyValuePair.Create(s, BitsAndBytesKeys.Key(name, s)))];
    }

    private static void Check(CheckpointReader reader, List<ModuleLoadStep> steps)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        var missing = new List<string>();
        var misShaped = new List<string>();
        foreach (var step in steps)
        {
            foreach (var (local, key) in step.Tensors)
            {
                used.Add(key);
                if (!reader.Contains(key))
                {
                    missing.Add(key);
                }
            }

            if (step.Kind == ModuleLoadKind.Prequantized)
            {
                CheckPrequantized(reader, step, misShaped);
                continue;
            }

            var shapes = step.Module.named_parameters(recurse: false).Select(p => (p.name, p.parameter.shape))
                .Concat(step.Module.named_buffers(recurse: false).Select(b => (b.name, b.buffer.shape)))
                .ToDictionary(x => x.name, x => x.shape, StringComparer.Ordinal);
            foreach (var (local, key) in step.Tensors)
            {
                if (!reader.Contains(key))
                {
                    continue;
                }

                var info = reader.Info(key);
                if (!info.Shape.SequenceEqual(shapes[local]))
                {
                    misShaped.Add($"{key}: checkpoint [{string.Join(", ", info.Shape)}] vs model [{string.Join(", ", shapes[local])}]");
                }
                else if (!Nf4Options.IsFloatingDtype(info.DType))
                {
                    misShaped.Add($"{key}: checkpoint dtype {info.DTypeName} is not a floating type (a bitsandbytes 4-bit checkpoint needs '{QuantizationConfigField}' in {ConfigFileName})");
                }
            }
        }

        var unexpected = reader.Names.Where(n => !used.Contains(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        missing.Sort(StringComparer.Ordinal);
        if (missing.Count > 0 || unexpected.Count > 0 || misShaped.Count > 0)
        {
            throw new CheckpointMismatchException(reader.Folder, missing, unexpected, misShaped);
        }
    }

    private static void CheckPrequantized(CheckpointReader reader, ModuleLoadStep step, List<string> misShaped)
    {
        var linear = (DenseLinear)step.Module;
        string stateKey = BitsAndBytesKeys.Key(step.Name, BitsAndBytesKeys.QuantState);
        using var qs = reader.Load(stateKey);
        var meta = QuantStateMetadata.Parse(Encoding.UTF8.GetString(qs.data<byte>().ToArray()), stateKey, reader.Folder);
        long[] modelShape = [linear.OutFeatures, linear.InFeatures];
        if (!meta.Shape.SequenceEqual(modelShape))
        {
            misShaped.Add($"{stateKey}: quant_state shape [{string.Join(", ", meta.Shape)}] vs model [{string.Join(", ", modelShape)}]");
            return;
        }

        string weightKey = BitsAndBytesKeys.Key(step.Name, BitsAndBytesKeys.Weight);
        if (reader.Contains(weightKey))
        {
            var info = reader.Info(weightKey);
            long expected = ((modelShape[0] * modelShape[1]) + 1) / 2;
            if (info.DType != ScalarType.Byte || info.ElementCount != expected)
            {
                misShaped.Add($"{weightKey}: checkpoint {info.DTypeName} [{string.Join(", ", info.Shape)}] vs packed uint8 [{expected}, 1]");
            }
        }
    }

    private static Linear4bit QuantizeStep(ModuleLoadStep step, CheckpointReader reader, QuantizedLoadOptions options, Device device)
    {
        string weightKey = step.Tensors.Single(t => t.Key == "weight").Value;
        // Staged: the full-precision weight stays in host memory and goes to the device one quantization chunk at a time.
        bool stage = options.StageOnHost && device.type != DeviceType.CPU;
        using Tensor weight = reader.Load(weightKey, options.DType, stage ? CPU : device);
        using Tensor? bias = step.Tensors.Any(t => t.Key == "bias")
            ? reader.Load(step.Tensors.Single(t => t.Key == "bias").Value, options.DType, device)
            : null;
        return Linear4bit.FromLinear(weight, bias, options.Nf4, device); // staged chunk by chunk when the weight is in host memory
    }

    private static Linear4bit PrequantizedStep(ModuleLoadStep step, CheckpointReader reader, Device device, ScalarType computeDtype)
    {
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (_, key) in step.Tensors)
            {
                state[key] = reader.Load(key, null, key.EndsWith(BitsAndBytesKeys.QuantState, StringComparison.Ordinal) ? CPU : device);
            }

            // One copy per layer: the tensors read from the checkpoint. The Nf4Tensor holds new handles over their
            // storage (no copy), the layer adopts those handles as its buffers, and the state's handles are disposed below.
            using var nf4 = Nf4Tensor.FromBitsAndBytesState(state, step.Name, copy: false);
            state.TryGetValue(BitsAndBytesKeys.Key(step.Name, "bias"), out Tensor? bias);
            return Linear4bit.AdoptNf4(nf4, bias, computeDtype);
        }
        finally
        {
            foreach (var t in state.Values)
            {
                t.Dispose();
            }
        }
    }

    private static nn.Module DenseStep(ModuleLoadStep step, CheckpointReader reader, MistralConfig config, ScalarType dtype, Device device)
    {
        nn.Module fresh = step.Module switch
        {
            TokenEmbedding e => new TokenEmbedding(e.Weight.shape[0], e.Weight.shape[1], dtype, device),
            RmsNorm n => new RmsNorm(n.Weight.shape[0], config.RmsNormEps, dtype, device),
            DenseLinear l => new DenseLinear(l.InFeatures, l.OutFeatures, l.Bias is not null, dtype, device),
            _ => throw new NotSupportedException(
                $"Module '{step.Name}' ({step.Module.GetType().Name}) holds tensors but QuantizedModelLoader cannot rebuild it off the meta device."),
        };
        try
        {
            var targets = fresh.named_parameters(recurse: false).Select(p => (p.name, (Tensor)p.parameter))
                .Concat(fresh.named_buffers(recurse: false).Select(b => (b.name, b.buffer)))
                .ToDictionary(x => x.name, x => x.Item2, StringComparer.Ordinal);
            foreach (var (local, key) in step.Tensors)
            {
                // Read (and cast) in host memory and copy straight into the module's tensor: no second device-sized copy
                // (250 MiB for Mistral-7B's embedding table and lm_head) passes through the GPU allocator's cache.
                using Tensor source = reader.Load(key, dtype, CPU);
                targets[local].copy_(source);
            }

            return fresh;
        }
        catch
        {
            fresh.Dispose();
            throw;
        }
    }

    // The table moved into pinned (page-locked) host memory, which a kernel on the GPU reads through its host address:
    // each forward gathers its tokens' rows there with no copy of the ids to the host (TokenEmbedding.forward).
    // A host that cannot page-lock another 256 MiB (a container's locked-memory limit) keeps the table on the GPU instead,
    // with a warning: the default must not turn a load that fits the GPU into a failure.
    private static TokenEmbedding PinnedEmbedding(nn.Module loaded, Device device, ILogger logger)
    {
        using var table = (TokenEmbedding)loaded;
        using var guard = no_grad();
        Tensor pinned;
        try
        {
            pinned = table.Weight.pin_memory();
        }
        catch (Exception e) when (e is ExternalException or InvalidOperationException or OutOfMemoryException)
        {
            logger.LogWarning(
                "Could not pin the embedding table ({Bytes} bytes) in host memory ({Reason}); it stays on {Device} instead (QuantizedLoadOptions.EmbeddingsOnHost).",
                table.Weight.numel() * table.Weight.element_size(), e.Message, device);
            return new TokenEmbedding(table.Weight.to(device));
        }

        return new TokenEmbedding(pinned);
    }

    private static void ThrowIfAnyOnMeta(nn.Module model)
    {
        var onMeta = model.named_parameters().Where(p => p.parameter.device.type == DeviceType.META).Select(p => p.name)
            .Concat(model.named_buffers().Where(b => b.buffer.device.type == DeviceType.META).Select(b => b.name))
            .ToList();
        if (onMeta.Count > 0)
        {
            throw new InvalidOperationException($"After loading, {onMeta.Count} tensor(s) are still on the meta device: {string.Join(", ", onMeta)}.");
        }
    }

    private static (int Layers, int DenseTensors, long QuantizedBytes, long DenseBytes) Measure(nn.Module model)
    {
        int layers = 0;
        int denseCount = 0;
        long q = 0;
        long d = 0;
        foreach (var (_, module) in ModuleTree.NamedModules(model))
        {
            var tensors = module.named_parameters(recurse: false).Select(p => (Tensor)p.parameter)
                .Concat(module.named_buffers(recurse: false).Select(b => b.buffer));
            long bytes = tensors.Sum(t => t.numel() * t.ElementSize);
            if (module is Linear4bit)
            {
                layers++;
                q += bytes;
            }
            else
            {
                denseCount += module.named_parameters(recurse: false).Count() + module.named_buffers(recurse: false).Count();
                d += bytes;
            }
        }

        return (layers, denseCount, q, d);
    }

    private static long ElementSize(ScalarType dtype) => dtype == ScalarType.Float32 ? 4 : 2;
}
