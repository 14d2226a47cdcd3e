using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using DenseLinear = Mistral.Core.Modeling.Linear;

namespace Mistral.Pipeline.Export;

/// <summary>
/// Writes a model (dense or 4-bit base, with or without LoRA) as a plain Hugging Face checkpoint in 16 bits: names and
/// shapes are those of a fresh <see cref="MistralForCausalLM"/> (built on the meta device, no memory), each projection's
/// weight materialised as float32(base) + ΔW (LoRA) and cast once. Shards are built one at a time on the CPU, in a staging
/// folder that becomes the destination with one rename.
/// </summary>
internal static class MergedCheckpointWriter
{
    private static readonly string[] TokenizerFiles =
        ["tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

    public static void Write(MistralForCausalLM model, string sourceFolder, string folder, MergedExportOptions options,
        IProgress<PipelineProgress>? progress, ILogger logger, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        string target = Path.GetFullPath(folder);
        if (File.Exists(target))
        {
            throw new IOException($"SaveMerged: '{target}' is a file; give a folder path.");
        }

        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any() && !options.Overwrite)
        {
            throw new IOException($"SaveMerged: '{target}' exists and is not empty; choose a new folder or set MergedExportOptions.Overwrite.");
        }

        string parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        var modules = ModuleTree.NamedModules(model).ToDictionary(m => m.Name, m => m.Module, StringComparer.Ordinal);
        var live = model.state_dict();
        List<(string Name, long[] Shape)> expected;
        using (var meta = new MistralForCausalLM(model.Config, options.DType, META))
        {
            expected = meta.state_dict().Select(kv => (kv.Key, kv.Value.shape)).ToList();
        }

        long elementBytes = options.DType == ScalarType.Float32 ? 4 : 2;
        var shards = new List<List<(string Name, long[] Shape)>>();
        long current = 0;
        foreach (var entry in expected)
        {
            long bytes = entry.Shape.Aggregate(1L, (a, b) => a * b) * elementBytes;
            if (shards.Count == 0 || (current + bytes > options.MaxShardBytes && shards[^1].Count > 0))
            {
                shards.Add([]);
                current = 0;
            }

            shards[^1].Add(entry);
            current += bytes;
        }

        string staging = Path.Combine(parent, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(staging);
        try
        {
            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            long totalBytes = 0;
            for (int s = 0; s < shards.Count; s++)
            {
                string file = shards.Count == 1
                    ? CheckpointReader.SingleFileName
                    : string.Create(CultureInfo.InvariantCulture, $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors");
                var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
                try
                {
                    foreach (var (name, shape) in shards[s])
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        Tensor t = Materialize(name, modules, live, options.DType);
                        tensors[name] = t;
                        if (!t.shape.SequenceEqual(shape))
                        {
                            throw new InvalidOperationException($"SaveMerged: '{name}' has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", shape)}].");
                        }

                        using (var finite = t.isfinite().all())
                        {
                            if (!finite.item<bool>())
                            {
                                throw new InvalidOperationException($"SaveMerged: '{name}' holds NaN or infinity; nothing was written.");
                            }
                        }

                        weightMap[name] = file;
                        totalBytes += t.NumberOfElements * elementBytes;
                    }

                    SafeTensorsWriter.Write(Path.Combine(staging, file), tensors, new Dictionary<string, string> { ["format"] = "pt" }, cancellationToken);
                }
                finally
                {
                    foreach (var t in tensors.Values)
                    {
                        t.Dispose();
                    }
                }

                progress?.Report(new PipelineProgress(PipelineStage.Saving, s + 1, shards.Count, $"merged shard {s + 1}/{shards.Count}"));
            }

            if (shards.Count > 1)
            {
                var index = new JsonObject
                {
                    ["metadata"] = new JsonObject { ["total_size"] = totalBytes },
                    ["weight_map"] = new JsonObject(weightMap.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
                };
                File.WriteAllText(Path.Combine(staging, CheckpointReader.IndexFileName), index.ToJsonString(new() { WriteIndented = true }));
            }

            var config = model.Config with { TorchDtype = options.DType switch { ScalarType.Float32 => "float32", ScalarType.Float16 => "float16", _ => "bfloat16" } };
            File.WriteAllText(Path.Combine(staging, "config.json"), config.ToJson());
            foreach (string name in TokenizerFiles)
            {
                string source = Path.Combine(sourceFolder, name);
                if (File.Exists(source))
                {
                    File.Copy(source, Path.Combine(staging, name));
                }
            }

            cancellationToken.ThrowIfCancellationRequested();
            SwapIn(staging, target, logger);
            logger.LogInformation("Wrote merged checkpoint {Folder}: {Tensors} tensors, {Bytes:N0} bytes in {Shards} shard(s), {DType}.",
                target, expected.Count, totalBytes, shards.Count, options.DType);
        }
        catch
        {
            try
            {
                if (Directory.Exists(staging))
                {
                    Directory.Delete(staging, recursive: true);
                }
            }
            catch (IOException cleanup)
            {
                logger.LogWarning(cleanup, "SaveMerged: could not remove the staging folder {Staging}", staging);
            }

            throw;
        }
    }

    /// <summary>Moves the finished staging folder into place: a missing or empty target is replaced by one rename; an existing one is moved aside first and deleted after.</summary>
    private static void SwapIn(string staging, string target, ILogger logger)
    {
        if (!Directory.Exists(target))
        {
            Directory.Move(staging, target);
            return;
        }

        string aside = target + $".{Guid.NewGuid():N}.old";
        Directory.Move(target, aside);
        try
        {
            Directory.Move(staging, target);
        }
        catch
        {
            Directory.Move(aside, target);
            throw;
        }

        try
        {
            Directory.Delete(aside, recursive: true); // the export succeeded: failing to remove the old copy is only a warning
        }
        catch (IOException e)
        {
            logger.LogWarning(e, "SaveMerged: the new checkpoint is in place but the previous one could not be removed from {Aside}", aside);
        }
    }

    private static Tensor Materialize(string name, Dictionary<string, nn.Module> modules, Dictionary<string, Tensor> live, ScalarType dtype)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (name.EndsWith(".weight", StringComparison.Ordinal) && modules.TryGetValue(name[..^".weight".Length], out var module))
        {
            switch (module)
            {
                case LoraLinear lora:
                    Tensor merged = BaseWeight(lora.BaseLayer, name);
                    if (!lora.Merged)
                    {
                        merged = merged + lora.DeltaWeight().to(merged.device);
                    }

                    return merged.to(dtype).cpu().MoveToOuterDisposeScope();
                case Linear4bit q:
                    return BaseWeight(q, name).to(dtype).cpu().MoveToOuterDisposeScope();
            }
        }

        if (!live.TryGetValue(name, out var tensor))
        {
            throw new InvalidOperationException($"SaveMerged: the model has no tensor '{name}' (a layer it cannot export).");
        }

        return tensor.detach().to(dtype).cpu().clone().MoveToOuterDisposeScope();
    }

    private static Tensor BaseWeight(nn.Module layer, string name) => layer switch
    {
        Linear4bit q => Dequantize(q),
        DenseLinear d => d.Weight.detach().to(ScalarType.Float32),
        _ => throw new InvalidOperationException($"SaveMerged: '{name}' is a {layer.GetType().Name}; only Linear and Linear4bit bases can be exported."),
    };

    private static Tensor Dequantize(Linear4bit q)
    {
        // As the layer computes (and bitsandbytes): dequantize to the stored dtype, then widen.
        using var w = q.QuantizedWeight();
        using var stored = w.Dequantize(w.DType);
        return stored.to(ScalarType.Float32);
    }
}
