using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using Mistral.Peft.IO;
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
    /// Writes <paramref name="lora"/>'s adapter into <paramref name="folder"/> (created if needed) as one unit: both files
    /// are written completely into a temporary sibling folder (with the folder's other files copied next to them) that
    /// then replaces the folder by directory renames. A failure or cancellation leaves the folder's previous adapter as
    /// it was, and no temporary folder behind; a process killed during the swap leaves the previous or the new adapter,
    /// completed by the next save or load of the folder, never a mix. The weights file's metadata records <c>r</c> and
    /// <c>lora_alpha</c>, so that <see cref="Load"/> refuses weights next to another adapter's config.
    /// </summary>
    /// <param name="lora">The adapted model.</param>
    /// <param name="folder">The output folder.</param>
    /// <param name="baseModelNameOrPath">Recorded as <c>base_model_name_or_path</c> (e.g. <c>mistralai/Mistral-7B-v0.1</c>); may be null.</param>
    /// <param name="cancellationToken">Cancels between tensors and between the two files, up to the moment the files are moved into place.</param>
    public static void Save(LoraModel lora, string folder, string? baseModelNameOrPath = null, CancellationToken cancellationToken = default) =>
        Save(lora, folder, baseModelNameOrPath, cancellationToken, fileStaged: null);

    /// <summary>The weights file's metadata key recording the config's <c>r</c>.</summary>
    internal const string RankMetadataKey = "lora_r";

    /// <summary>The weights file's metadata key recording the config's <c>lora_alpha</c>.</summary>
    internal const string AlphaMetadataKey = "lora_alpha";

    /// <summary><see cref="Save(LoraModel, string, string?, CancellationToken)"/>; <paramref name="fileStaged"/> is told each file name once it is fully written to the staging folder (tests inject failures there).</summary>
    internal static void Save(LoraModel lora, string folder, string? baseModelNameOrPath, CancellationToken cancellationToken, Action<string>? fileStaged,
        Action<StagedFolder.CommitStep>? commitStep = null)
    {
        ArgumentNullException.ThrowIfNull(lora);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        using var staged = StagedFolder.Create(folder);
        var names = WriteFiles(lora, staged.StagingPath, baseModelNameOrPath, cancellationToken, fileStaged);
        staged.Commit(names, commitStep);
    }

    /// <summary>
    /// Writes the adapter's two files into <paramref name="directory"/> (an existing folder, normally a staging folder
    /// committed by the caller), weights first; returns their names.
    /// </summary>
    internal static IReadOnlyList<string> WriteFiles(LoraModel lora, string directory, string? baseModelNameOrPath, CancellationToken cancellationToken,
        Action<string>? fileStaged = null)
    {
        ArgumentNullException.ThrowIfNull(lora);
        var config = PeftAdapterConfig.FromOptions(lora.Options, lora.ConfigTargetModules ?? [], baseModelNameOrPath);
        using (var scope = NewDisposeScope())
        {
            var tensors = lora.NamedAdapterParameters()
                .Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.detach().cpu()))
                .ToList();
            SafeTensorsWriter.Write(Path.Combine(directory, WeightsFileName), tensors,
                new Dictionary<string, string>
                {
                    ["format"] = "pt",
                    [RankMetadataKey] = config.R.ToString(CultureInfo.InvariantCulture),
                    [AlphaMetadataKey] = config.LoraAlpha.ToString("R", CultureInfo.InvariantCulture),
                }, cancellationToken);
        }

        fileStaged?.Invoke(WeightsFileName);
        cancellationToken.ThrowIfCancellationRequested();
        WriteText(Path.Combine(directory, ConfigFileName), config.ToJson());
        fileStaged?.Invoke(ConfigFileName);
        cancellationToken.ThrowIfCancellationRequested();
        return [WeightsFileName, ConfigFileName];
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
    /// tensor's key, shape and dtype against the model and reads every tensor <em>before</em> changing the model, then
    /// injects the LoRA layers and copies the weights (converted to the adapter dtype, float32). A failure or
    /// cancellation leaves the model as it was. The model's base parameters end up frozen, and the model (LoRA layers
    /// included) in eval mode, as PEFT's <c>from_pretrained</c> leaves it; call <c>train()</c> to go on training.
    /// </summary>
    /// <param name="model">The base model (without LoRA layers).</param>
    /// <param name="folder">The adapter folder.</param>
    /// <param name="logger">Receives warnings (ignored config keys, lossy 4-bit merges later); null logs nothing.</param>
    /// <param name="cancellationToken">Cancels between tensors while reading (the model is not changed until all are read).</param>
    /// <returns>The adapted model's handle.</returns>
    /// <exception cref="AdapterMismatchException">Missing or unexpected keys, or a shape that differs (key and both shapes named).</exception>
    /// <exception cref="InvalidDataException">The weights file is malformed, or a tensor is not a floating type (file and key named).</exception>
    public static LoraModel Load(MistralForCausalLM model, string folder, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        logger ??= NullLogger.Instance;
        ArgumentException.ThrowIfNullOrEmpty(folder);
        StagedFolder.Recover(folder);
        PeftAdapterConfig config = ReadConfig(folder, logger);
        LoraOptions options = config.ToLoraOptions();
        string weightsPath = WeightsPath(folder);
        using SafeTensorsFile file = SafeTensorsFile.Open(weightsPath);
        CheckSameSave(weightsPath, file, config);

        var expected = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (string name in LoraInjector.SelectTargets(model, options))
        {
            var linear = (ILinearLayer)ModuleTree.Get(model, name);
            expected[LoraModel.PeftKey(name, "lora_A")] = [options.R, linear.InFeatures];
            expected[LoraModel.PeftKey(name, "lora_B")] = [linear.OutFeatures, options.R];
        }

        Check(weightsPath, file, expected);
        Dictionary<string, Tensor> weights = ReadAll(weightsPath, file, cancellationToken);
        try
        {
            // Nothing below can fail on input that passed the checks above: the model changes only from here on.
            LoraModel lora = LoraInjector.Inject(model, options, logger);
            Copy(lora, weights);
            model.eval();
            logger.LogInformation("Loaded LoRA adapter {Folder}: r={R}, alpha={Alpha}, {Count} layers.", folder, options.R, options.Alpha, lora.Layers.Count);
            return lora;
        }
        finally
        {
            DisposeAll(weights);
        }
    }

    /// <summary>
    /// Copies the weights saved in <paramref name="folder"/> into an already adapted model (same targets and rank). Every
    /// tensor is checked and read before the first copy, so a failure or cancellation leaves the adapter unchanged.
    /// </summary>
    /// <param name="lora">The adapted model.</param>
    /// <param name="folder">The adapter folder (only <c>adapter_model.safetensors</c> is read).</param>
    /// <param name="cancellationToken">Cancels between tensors while reading.</param>
    /// <exception cref="AdapterMismatchException">Missing or unexpected keys, or a shape that differs.</exception>
    /// <exception cref="InvalidDataException">The weights file is malformed, or a tensor is not a floating type (file and key named).</exception>
    public static void LoadWeights(LoraModel lora, string folder, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(lora);
        string weightsPath = WeightsPath(folder);
        using SafeTensorsFile file = SafeTensorsFile.Open(weightsPath);
        var expected = lora.NamedAdapterParameters().ToDictionary(kv => kv.Key, kv => kv.Value.shape, StringComparer.Ordinal);
        Check(weightsPath, file, expected);
        Dictionary<string, Tensor> weights = ReadAll(weightsPath, file, cancellationToken);
        try
        {
            Copy(lora, weights);
        }
        finally
        {
            DisposeAll(weights);
        }
    }

    // Weights saved by this library record the r and lora_alpha of the config saved with them: a config of another save is refused.
    private static void CheckSameSave(string weightsPath, SafeTensorsFile file, PeftAdapterConfig config)
    {
        var differences = new List<string>();
        if (file.Metadata.TryGetValue(RankMetadataKey, out string? r) && r != config.R.ToString(CultureInfo.InvariantCulture))
        {
            differences.Add($"r {r} (config {config.R})");
        }

        if (file.Metadata.TryGetValue(AlphaMetadataKey, out string? alpha)
            && (!double.TryParse(alpha, NumberStyles.Float, CultureInfo.InvariantCulture, out double a) || a != config.LoraAlpha))
        {
            differences.Add($"lora_alpha {alpha} (config {config.LoraAlpha.ToString("R", CultureInfo.InvariantCulture)})");
        }

        if (differences.Count > 0)
        {
            throw new InvalidDataException(
                $"{weightsPath} was saved with {string.Join(" and ", differences)} in {ConfigFileName}: the weights and the config come from different saves (an interrupted copy or save?).");
        }
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

    // Reads every tensor of the (already checked) file onto the CPU in its stored dtype, rejecting non-floating ones.
    private static Dictionary<string, Tensor> ReadAll(string path, SafeTensorsFile file, CancellationToken cancellationToken)
    {
        var notFloating = file.Tensors.Values.Where(t => !is_floating_point(t.DType)).OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        if (notFloating.Count > 0)
        {
            throw new InvalidDataException(
                $"{path}: LoRA weights must be floating point (F32, F16, BF16 or F64); {string.Join(", ", notFloating.Select(t => $"'{t.Name}' is {t.DTypeName}"))}.");
        }

        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (string key in file.Tensors.Keys.Order(StringComparer.Ordinal))
            {
                cancellationToken.ThrowIfCancellationRequested();
                weights[key] = file.Load(key);
            }

            return weights;
        }
        catch
        {
            DisposeAll(weights);
            throw;
        }
    }

    private static void Copy(LoraModel lora, Dictionary<string, Tensor> weights)
    {
        using var guard = no_grad();
        foreach (var (key, parameter) in lora.NamedAdapterParameters())
        {
            parameter.copy_(weights[key]);
        }
    }

    private static void DisposeAll(Dictionary<string, Tensor> tensors)
    {
        foreach (var t in tensors.Values)
        {
            t.Dispose();
        }
    }

    private static void WriteText(string path, string text)
    {
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        fs.Write(new UTF8Encoding(false).GetBytes(text));
        fs.Flush(flushToDisk: true);
    }
}
