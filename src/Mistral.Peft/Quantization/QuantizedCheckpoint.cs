using System.Text.Json;
using System.Text.Json.Nodes;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using Mistral.Peft.IO;
using TorchSharp;
using static TorchSharp.torch;
using DenseLinear = Mistral.Core.Modeling.Linear;

namespace Mistral.Peft.Quantization;

/// <summary>
/// Writes a 4-bit model in the layout bitsandbytes/transformers save (and load) for a 4-bit model: for every
/// <see cref="Linear4bit"/> <c>P</c> the keys <c>P.weight</c> (packed uint8), <c>P.weight.absmax</c>,
/// <c>P.weight.quant_map</c>, <c>P.weight.nested_absmax</c>, <c>P.weight.nested_quant_map</c> (with double
/// quantization) and <c>P.weight.quant_state.bitsandbytes__nf4</c>; every other tensor under its usual name and dtype;
/// and <c>config.json</c> with <c>quantization_config</c>. Read it back with <see cref="QuantizedModelLoader.LoadPrequantized"/>
/// or transformers' <c>from_pretrained</c>.
/// </summary>
public static class QuantizedCheckpoint
{
    /// <summary>
    /// Saves <paramref name="model"/> to <paramref name="folder"/> as <c>model.safetensors</c> (metadata
    /// <c>{"format":"pt"}</c>) and <c>config.json</c>, as one unit: both are written completely into a temporary sibling
    /// folder (with the folder's other files copied next to them), which then replaces the folder by directory renames. A
    /// failure or cancellation leaves the folder as it was (its other files are kept) and no temporary folder behind; a
    /// process killed during the swap leaves the previous or the new checkpoint, completed by the next save of the
    /// folder, never a mix.
    /// </summary>
    /// <param name="model">A model with at least one <see cref="Linear4bit"/>, all with the same double quantization and compute dtype.</param>
    /// <param name="folder">Destination folder (created when absent).</param>
    /// <param name="cancellationToken">Checked between tensors and between the two files, up to the moment the files are moved into place.</param>
    /// <exception cref="InvalidOperationException">The model has no 4-bit layer, or its 4-bit layers disagree on double quantization or compute dtype.</exception>
    /// <exception cref="IOException">The folder holds a sharded index (<c>model.safetensors.index.json</c>) that would shadow the new file.</exception>
    public static void Save(MistralForCausalLM model, string folder, CancellationToken cancellationToken = default) =>
        Save(model, folder, cancellationToken, fileStaged: null);

    /// <summary><see cref="Save(MistralForCausalLM, string, CancellationToken)"/>; <paramref name="fileStaged"/> is told each file name once it is fully written to the staging folder (tests inject failures there).</summary>
    internal static void Save(MistralForCausalLM model, string folder, CancellationToken cancellationToken, Action<string>? fileStaged,
        Action<StagedFolder.CommitStep>? commitStep = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        var modules = ModuleTree.NamedModules(model).ToList();
        var quantized = modules.Where(m => m.Module is Linear4bit).Select(m => (m.Name, Layer: (Linear4bit)m.Module)).ToList();
        if (quantized.Count == 0)
        {
            throw new InvalidOperationException("The model has no Linear4bit layer; save a dense model with CheckpointLoader.Save.");
        }

        bool doubleQuant = IsDoubleQuantized(quantized[0].Layer);
        var compute = quantized[0].Layer.ComputeDtype;
        foreach (var (name, layer) in quantized)
        {
            if (IsDoubleQuantized(layer) != doubleQuant || layer.ComputeDtype != compute)
            {
                throw new InvalidOperationException(
                    $"Linear4bit '{name}' (double quant {IsDoubleQuantized(layer)}, compute {layer.ComputeDtype}) differs from '{quantized[0].Name}' (double quant {doubleQuant}, compute {compute}); quantization_config can describe only one setting.");
            }
        }

        string index = Path.Combine(folder, CheckpointReader.IndexFileName);
        if (File.Exists(index))
        {
            throw new IOException($"'{index}' exists and would take precedence over the new '{CheckpointReader.SingleFileName}'; save into an empty folder.");
        }

        var quantizedNames = new HashSet<string>(quantized.Select(q => q.Name), StringComparer.Ordinal);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var owned = new List<Tensor>();
        try
        {
            ScalarType? denseDtype = null;
            foreach (var (name, module) in modules)
            {
                if (module is Linear4bit layer)
                {
                    foreach (var (key, t) in layer.ToBitsAndBytesState(name))
                    {
                        owned.Add(t);
                        tensors.Add(key, t);
                    }

                    continue;
                }

                foreach (var (local, p) in module.named_parameters(recurse: false))
                {
                    denseDtype ??= p.dtype;
                    tensors.Add(Join(name, local), p);
                }

                foreach (var (local, b) in module.named_buffers(recurse: false))
                {
                    tensors.Add(Join(name, local), b);
                }
            }

            using var staged = StagedFolder.Create(folder);
            SafeTensorsWriter.Write(staged.PathFor(CheckpointReader.SingleFileName), tensors,
                new Dictionary<string, string> { ["format"] = "pt" }, cancellationToken);
            fileStaged?.Invoke(CheckpointReader.SingleFileName);
            cancellationToken.ThrowIfCancellationRequested();

            var skipped = modules.Where(m => m.Module is DenseLinear && m.Name != "lm_head").Select(m => m.Name).ToList();
            var quantConfig = new QuantizationConfig
            {
                UseDoubleQuant = doubleQuant,
                ComputeDtype = compute,
                SkipModules = skipped.Count == 0 ? null : ["lm_head", .. skipped],
            };
            var config = model.Config with { TorchDtype = Nf4Tensor.DtypeName(denseDtype ?? model.DType) };
            var json = JsonNode.Parse(config.ToJson())!.AsObject();
            json[QuantizedModelLoader.QuantizationConfigField] = quantConfig.ToJson();
            WriteText(staged.PathFor(QuantizedModelLoader.ConfigFileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            fileStaged?.Invoke(QuantizedModelLoader.ConfigFileName);
            cancellationToken.ThrowIfCancellationRequested();
            staged.Commit([CheckpointReader.SingleFileName, QuantizedModelLoader.ConfigFileName], commitStep);
        }
        finally
        {
            foreach (var t in owned)
            {
                t.Dispose();
            }
        }
    }

    private static bool IsDoubleQuantized(Linear4bit layer)
    {
        using var w = layer.QuantizedWeight();
        return w.IsDoubleQuantized;
    }

    private static string Join(string prefix, string local) => prefix.Length == 0 ? local : prefix + "." + local;

    private static void WriteText(string path, string text)
    {
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        fs.Write(new System.Text.UTF8Encoding(false).GetBytes(text));
        fs.Flush(flushToDisk: true);
    }
}
