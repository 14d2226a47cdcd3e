using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using Mistral.Peft.IO;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// Trains the parameters of a <see cref="MistralForCausalLM"/> themselves — all of them (full-parameter training,
/// pre-training from scratch included) or a chosen subset (<see cref="TrainableSelection"/>) — with the training loop of
/// <see cref="LoraTrainer"/>: the same shuffle, micro-batching, gradient accumulation, token-weighted loss, clipping,
/// device-side step values, progress, cancellation and learning-rate schedules.
/// </summary>
/// <remarks>
/// <para>
/// For the run the selected parameters require gradients and every other parameter does not; each parameter's previous
/// <c>requires_grad</c> is restored at the end (also on failure or cancellation), and the trained parameters' gradients
/// are released. The model's weights are updated in place in the model's own dtype: a bfloat16 model is trained in pure
/// bfloat16 (gradients and AdamW state in bfloat16, no float32 master copy), so a change below bfloat16's resolution
/// is lost (e.g. a decay factor 1 − lr·wd that rounds to 1); train a float32 model where that matters. A model built
/// for pre-training from scratch is initialised with <see cref="WeightInitializer.Initialize"/>.
/// </para>
/// <para>
/// AdamW gets two parameter groups as Hugging Face's <c>Trainer.create_optimizer</c> builds them: the parameters named
/// by <see cref="DecayParameterNames"/> with <see cref="TrainingOptions.WeightDecay"/>, and the rest (biases and norm
/// weights) with none.
/// </para>
/// </remarks>
public sealed class CausalLMTrainer
{
    /// <summary>The config file written next to <c>model.safetensors</c> in a checkpoint.</summary>
    public const string ConfigFileName = "config.json";

    // Hugging Face Trainer.get_decay_parameter_names (transformers 4.57): a parameter whose lower-cased full name matches
    // one of these gets no weight decay (nor does one inside a LayerNorm-type module: RmsNorm here).
    private static readonly Regex[] NoDecayPatterns =
        [.. new[] { "bias", "layernorm", "rmsnorm", @"(?:^|\.)norm(?:$|\.)", @"_norm(?:$|\.)" }.Select(p => new Regex(p, RegexOptions.CultureInvariant))];

    private readonly ILogger _logger;

    /// <summary>Creates a trainer.</summary>
    /// <param name="logger">Receives a line every <see cref="TrainingOptions.LogEverySteps"/> steps and per epoch; null for none.</param>
    public CausalLMTrainer(ILogger<CausalLMTrainer>? logger = null)
    {
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Trains the selected parameters of <paramref name="model"/> in place.</summary>
    /// <param name="model">The model; 16- or 32-bit for <see cref="TrainableSelection.All"/>.</param>
    /// <param name="selection">The parameters to train: <see cref="TrainableSelection.All"/> or a subset by name.</param>
    /// <param name="data">Packed blocks (<see cref="SftPacker"/>) or completion examples (<see cref="SftCompletionBuilder"/>).</param>
    /// <param name="options">
    /// Training options (validated here). With <see cref="TrainingOptions.CheckpointFolder"/> every checkpoint is a whole
    /// model: <c>checkpoint-{step}/model.safetensors</c> and <c>config.json</c>, loadable with <c>CheckpointLoader</c> or
    /// transformers' <c>from_pretrained</c>.
    /// </param>
    /// <param name="progress">
    /// Told about every optimizer step, on the training thread, when the step's values are read from the device (see
    /// <see cref="TrainingProgress"/>): in bursts every <see cref="TrainingOptions.ReportEverySteps"/> steps.
    /// </param>
    /// <param name="cancellationToken">
    /// Checked before every micro-batch and after every progress report. On cancellation the gradients of the unfinished
    /// step are discarded, the model's training mode, checkpointing setting and <c>requires_grad</c> flags are restored
    /// and the steps already taken stay applied.
    /// </param>
    /// <returns>Per-step losses, gradient norms, learning rates, tokens and timings.</returns>
    /// <exception cref="ArgumentException">
    /// The data is empty or holds a token id outside the model's vocabulary (the message names the block or example, the
    /// position and the id); the selection selects nothing, or a 4-bit <see cref="Linear4bit"/> layer (or, for
    /// <see cref="TrainableSelection.All"/>, the model has one); checkpoints are asked for but the model holds 4-bit or
    /// LoRA layers (not a plain Mistral checkpoint); or an option is invalid.
    /// </exception>
    /// <exception cref="TrainingCanceledException">The token was cancelled; the exception (an <see cref="OperationCanceledException"/>) carries every step taken.</exception>
    /// <exception cref="TrainingDivergedException">
    /// A step's loss or gradient norm was not finite (<see cref="TrainingOptions.NonFiniteStep"/>), or the trained weights
    /// were not finite when a checkpoint was due (it is not written); the exception names the step and carries the steps taken.
    /// </exception>
    /// <exception cref="IOException"><see cref="TrainingOptions.CheckpointFolder"/> cannot be created, or writing a checkpoint failed.</exception>
    public TrainingResult Train(MistralForCausalLM model, TrainableSelection selection, TrainingDataset data, TrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(selection);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (data.Count == 0)
        {
            throw new ArgumentException($"data is empty: no blocks or examples to train on ({data.Describe()}).", nameof(data));
        }

        data.CheckTokenIds(model.Config.VocabSize);
        var selected = selection.Resolve(model);
        if (options.CheckpointFolder is not null)
        {
            var foreign = ModuleTree.NamedModules(model).Where(m => m.Module is Linear4bit or LoraLinear).ToList();
            if (foreign.Count > 0)
            {
                throw new ArgumentException(
                    $"{options.GetType().Name}.CheckpointFolder is set, but CausalLMTrainer checkpoints are plain Mistral checkpoints and the model holds " +
                    $"{foreign.Count} {foreign[0].Module.GetType().Name} layer(s) (first '{foreign[0].Name}'); save adapters with LoraTrainer or PeftAdapter.Save, or merge them first.",
                    nameof(options));
            }
        }

        var decay = DecayParameterNames(model).ToHashSet(StringComparer.Ordinal);
        var parameters = selected.Select(s => s.Parameter).ToList();
        var groups = new[]
        {
            new TrainingLoop.ParameterGroup(selected.Where(s => decay.Contains(s.Name)).Select(s => s.Parameter).ToList(), options.WeightDecay),
            new TrainingLoop.ParameterGroup(selected.Where(s => !decay.Contains(s.Name)).Select(s => s.Parameter).ToList(), 0.0),
        };
        long all = model.parameters().Sum(p => p.numel());
        var trainable = new TrainableParameterCount(parameters.Sum(p => p.numel()), all);
        var setup = new TrainingLoop.Setup("Full-parameter training", $"{selection.Description}: {trainable}; weight decay on {groups[0].Parameters.Count} of {parameters.Count} tensors",
            parameters, groups, (directory, ct) => WriteCheckpointFiles(model, directory, ct), folder => CheckpointLoader.Load(model, folder), "model");

        var previous = model.named_parameters().Select(p => (p.parameter, p.parameter.requires_grad)).ToList();
        var chosen = new HashSet<Parameter>(parameters, ReferenceEqualityComparer.Instance);
        try
        {
            foreach (var (p, _) in previous)
            {
                p.requires_grad = chosen.Contains(p);
            }

            return TrainingLoop.Run(_logger, model, data, options, setup, progress, cancellationToken);
        }
        finally
        {
            foreach (var p in parameters)
            {
                p.grad = null; // the gradients are as large as the trained weights: release them
            }

            foreach (var (p, requiresGrad) in previous)
            {
                p.requires_grad = requiresGrad;
            }
        }
    }

    /// <summary>
    /// The names of the parameters that get weight decay, as Hugging Face's <c>Trainer.get_decay_parameter_names</c>
    /// (transformers 4.57) selects them: every parameter except those inside a norm module (<see cref="RmsNorm"/>, HF's
    /// LayerNorm types) and those whose lower-cased name contains <c>bias</c>, <c>layernorm</c> or <c>rmsnorm</c>, or a
    /// segment <c>norm</c> or ending in <c>_norm</c>. For Mistral: every projection, the embedding and <c>lm_head</c>
    /// decay; <c>input_layernorm</c>, <c>post_attention_layernorm</c> and <c>model.norm</c> do not.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <returns>The names, in <c>named_parameters</c> order.</returns>
    public static IReadOnlyList<string> DecayParameterNames(MistralForCausalLM model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var norms = ModuleTree.NamedModules(model).Where(m => m.Module is RmsNorm).Select(m => m.Name + ".").ToList();
        return model.named_parameters()
            .Select(p => p.name)
            .Where(name => !norms.Any(n => name.StartsWith(n, StringComparison.Ordinal))
                && !NoDecayPatterns.Any(r => r.IsMatch(name.ToLowerInvariant())))
            .ToList();
    }

    /// <summary>
    /// Writes <paramref name="model"/> into <paramref name="folder"/> as <c>model.safetensors</c> (<c>CheckpointLoader.Save</c>)
    /// and <c>config.json</c> (<c>model.Config.ToJson()</c>, <c>torch_dtype</c> the parameters' dtype), as one unit: both are
    /// written into a temporary sibling folder and then moved into place (a new folder by one rename).
    /// </summary>
    internal static void SaveCheckpoint(MistralForCausalLM model, string folder, CancellationToken cancellationToken)
    {
        using var staged = StagedFolder.Create(folder);
        staged.Commit(WriteCheckpointFiles(model, staged.StagingPath, cancellationToken));
    }

    /// <summary>Writes <c>model.safetensors</c> and <c>config.json</c> into <paramref name="directory"/> (a staging folder); returns their names.</summary>
    internal static IReadOnlyList<string> WriteCheckpointFiles(MistralForCausalLM model, string directory, CancellationToken cancellationToken)
    {
        using (no_grad())
        {
            CheckpointLoader.Save(model, directory, cancellationToken);
        }

        cancellationToken.ThrowIfCancellationRequested();
        var config = model.Config with { TorchDtype = DtypeName(model.parameters().First().dtype) };
        using (var fs = new FileStream(Path.Combine(directory, ConfigFileName), FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            fs.Write(new UTF8Encoding(false).GetBytes(config.ToJson() + "\n"));
            fs.Flush(flushToDisk: true);
        }

        cancellationToken.ThrowIfCancellationRequested();
        return [CheckpointReader.SingleFileName, ConfigFileName];
    }

    private static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };
}
