using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Adapters;

/// <summary>
/// Saves and loads LoRA adapters in PEFT's format, so that adapters move both ways between this library and Python's
/// PEFT: a folder with <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> (metadata <c>{"format":"pt"}</c>,
/// keys <c>base_model.model.{module}.lora_A.weight</c> [r, in] and <c>….lora_B.weight</c> [out, r]).
/// </summary>
public static class PeftAdapter
{
    /// <summary>The config file name.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>The weights file name.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>
    /// Writes <paramref name="lora"/>'s adapter into <paramref name="folder"/> (created if needed). Each file is written to a
    /// temporary file and renamed, weights first, so a failure never leaves a partial file.
    /// </summary>
    /// <param name="lora">The adapted model.</param>
    /// <param name="folder">The output folder.</param>
    /// <param name="baseModelNameOrPath">Recorded as <c>base_model_name_or_path</c> (e.g. <c>mistralai/Mistral-7B-v0.1</c>); may be null.</param>
    /// <param name="cancellationToken">Cancels between tensors.</param>
    public static void Save(LoraModel lora, string folder, string? baseModelNameOrPath = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(lora);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        Directory.CreateDirectory(folder);
        using (var scope = NewDisposeScope())
        {
            var tensors = lora.NamedAdapterParameters()
                .Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.detach().cpu()))
                .ToList();
            SafeTensorsWriter.Write(Path.Combine(folder, WeightsFileName), tensors,
                new Dictionary<string, string> { ["format"] = "pt" }, cancellationToken);
        }

        var config = PeftAdapterConfig.FromOptions(lora.Options, lora.TargetModuleNames, baseModelNameOrPath);
        WriteTextAtomically(Path.Combine(folder, ConfigFileName), config.ToJson());
    }

    /// <summary>Reads <c>adapter_config.json</c> from <paramref name="folder"/>.</summary>
    /// <param name="folder">The adapter folder.</param>
    /// <param name="logger">Receives warnings for ignored keys; null logs nothing.</param>
    /// <returns>The config.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is malformed (the key is named).</exception>
    /// <exception cref="NotSupportedException">Not a plain LoRA adapter (the key or peft_type is named).</exception>
    public static PeftAdapterConfig ReadConfig(string folder, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string path = Path.Combine(folder, ConfigFileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"No {ConfigFileName} in '{folder}'.", path);
        }

        return PeftAdapterConfig.Parse(File.ReadAllText(path, Encoding.UTF8), path, logger);
    }

    /// <summary>
    /// Adds the adapter saved in <paramref name="folder"/> to <paramref name="model"/>: reads the config, checks every
    /// tensor's key and shape against the model <em>before</em> changing it, injects the LoRA layers and copies the weights
    /// (converted to the adapter dtype, float32). The model's base parameters end up frozen.
    /// </summary>
    /// <param name="model">The base model (without LoRA layers).</param>
    /// <param name="folder">The adapter folder.</param>
    /// <param name="logger">Receives warnings (ignored config keys, lossy 4-bit merges later); null logs nothing.</param>
    /// <param name="cancellationToken">Cancels between tensors.</param>
    /// <returns>The adapted model's handle.</returns>
    /// <exception cref="AdapterMismatchException">Missing or unexpected keys, or a shape that differs (key and both shapes named).</exception>
    public static LoraModel Load(MistralForCausalLM model, string folder, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        logger ??= NullLogger.Instance;
        PeftAdapterConfig config = ReadConfig(folder, logger);
        LoraOptions options = config.ToLoraOptions();
        string weightsPath = WeightsPath(folder);
        using SafeTensorsFile file = SafeTensorsFile.Open(weightsPath);

        var expected = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (string name in LoraInjector.SelectTargets(model, options))
        {
            var linear = (ILinearLayer)ModuleTree.Get(model, name);
            expected[LoraModel.PeftKey(name, "lora_A")] = [options.R, linear.InFeatures];
            expected[LoraModel.PeftKey(name, "lora_B")] = [linear.OutFeatures, options.R];
        }

        Check(weightsPath, file, expected);
        LoraModel lora = LoraInjector.Inject(model, options, logger);
        Copy(lora, file, cancellationToken);
        logger.LogInformation("Loaded LoRA adapter {Folder}: r={R}, alpha={Alpha}, {Count} layers.", folder, options.R, options.Alpha, lora.Layers.Count);
        return lora;
    }

    /// <summary>Copies the weights saved in <paramref name="folder"/> into an already adapted model (same targets and rank).</summary>
    /// <param name="lora">The adapted model.</param>
    /// <param name="folder">The adapter folder (only <c>adapter_model.safetensors</c> is read).</param>
    /// <param name="cancellationToken">Cancels between tensors.</param>
    /// <exception cref="AdapterMismatchException">Missing or unexpected keys, or a shape that differs.</exception>
    public static void LoadWeights(LoraModel lora, string folder, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(lora);
        string weightsPath = WeightsPath(folder);
        using SafeTensorsFile file = SafeTensorsFile.Open(weightsPath);
        var expected = lora.NamedAdapterParameters().ToDictionary(kv => kv.Key, kv => kv.Value.shape, StringComparer.Ordinal);
        Check(weightsPath, file, expected);
        Copy(lora, file, cancellationToken);
    }

    private static string WeightsPath(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string path = Path.Combine(folder, WeightsFileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"No {WeightsFileName} in '{folder}'.", path);
        }

        return path;
    }

    private static void Check(string path, SafeTensorsFile file, IReadOnlyDictionary<string, long[]> expected)
    {
        var missing = expected.Keys.Where(k => !file.Tensors.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var unexpected = file.Tensors.Keys.Where(k => !expected.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var misShaped = new List<string>();
        foreach (var (key, shape) in expected.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (file.Tensors.TryGetValue(key, out var info) && !info.Shape.SequenceEqual(shape))
            {
                misShaped.Add($"{key}: adapter [{string.Join(", ", info.Shape)}] vs model [{string.Join(", ", shape)}]");
            }
        }

        if (missing.Count > 0 || unexpected.Count > 0 || misShaped.Count > 0)
        {
            throw new AdapterMismatchException(path, missing, unexpected, misShaped);
        }
    }

    private static void Copy(LoraModel lora, SafeTensorsFile file, CancellationToken cancellationToken)
    {
        using var guard = no_grad();
        foreach (var (key, parameter) in lora.NamedAdapterParameters())
        {
            cancellationToken.ThrowIfCancellationRequested();
            using Tensor source = file.Load(key, parameter.dtype, parameter.device);
            parameter.copy_(source);
        }
    }

    private static void WriteTextAtomically(string path, string text)
    {
        string full = Path.GetFullPath(path);
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(new UTF8Encoding(false).GetBytes(text));
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
}
