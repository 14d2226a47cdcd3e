using Microsoft.Extensions.Logging;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Lora;

/// <summary>
/// A <see cref="MistralForCausalLM"/> with LoRA layers injected by <see cref="LoraInjector.Inject"/>: run it with
/// <see cref="Model"/>'s forward as before. This handle lists the LoRA layers, hands their parameters to an optimizer,
/// merges/unmerges them, switches them off for an A/B comparison, and names tensors as PEFT saves them.
/// </summary>
public sealed class LoraModel
{
    /// <summary>Prefix PEFT puts before a module name in saved adapter keys.</summary>
    public const string PeftKeyPrefix = "base_model.model.";

    private readonly ILogger _logger;

    internal LoraModel(MistralForCausalLM model, LoraOptions options, IReadOnlyDictionary<string, LoraLinear> layers,
        IReadOnlyList<string>? configTargetModules, ILogger logger)
    {
        Model = model;
        Options = options;
        Layers = layers;
        ConfigTargetModules = configTargetModules;
        _logger = logger;
    }

    /// <summary>The adapted model (the same instance that was passed to the injector).</summary>
    public MistralForCausalLM Model { get; }

    /// <summary>The options the adapter was created with.</summary>
    public LoraOptions Options { get; }

    /// <summary>The LoRA layers by module name (e.g. <c>model.layers.0.self_attn.q_proj</c>), in ordinal name order.</summary>
    public IReadOnlyDictionary<string, LoraLinear> Layers { get; }

    /// <summary>The last name segments of the adapted modules, distinct and sorted (e.g. <c>q_proj</c>, <c>v_proj</c>).</summary>
    /// <remarks>Not what an adapter config records: see <see cref="ConfigTargetModules"/>.</remarks>
    public IReadOnlyList<string> TargetModuleNames =>
        Layers.Keys.Select(n => n[(n.LastIndexOf('.') + 1)..]).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

    /// <summary>
    /// The <c>target_modules</c> list PEFT records for this adapter, in ordinal order without duplicates: the entries of
    /// <see cref="LoraOptions.TargetModules"/> as given (a dotted entry such as <c>model.layers.0.self_attn.q_proj</c>
    /// stays dotted, so it selects that one module again when loaded), PEFT's default <c>q_proj</c>/<c>v_proj</c> when none
    /// were given, and for <see cref="LoraOptions.AllLinear"/> what PEFT writes for it: the last name segments of every
    /// linear layer except <c>lm_head</c> (exclusions are recorded separately in <c>exclude_modules</c>). Null when
    /// <see cref="LoraOptions.TargetModulesPattern"/> is used.
    /// </summary>
    public IReadOnlyList<string>? ConfigTargetModules { get; }

    /// <summary>Whether every LoRA layer is merged into its base.</summary>
    public bool IsMerged => Layers.Count > 0 && Layers.Values.All(l => l.Merged);

    /// <summary>Whether the LoRA layers are applied (false after <see cref="DisableAdapters"/>).</summary>
    public bool AdaptersEnabled => Layers.Values.Any(l => l.AdapterEnabled);

    /// <summary>Whether every adapter layer uses the fused input dropout on CUDA (<see cref="LoraLinear.UseFusedDropout"/>); setting it sets them all.</summary>
    public bool UseFusedDropout
    {
        get => Layers.Count > 0 && Layers.Values.All(l => l.UseFusedDropout);
        set
        {
            foreach (LoraLinear layer in Layers.Values)
            {
                layer.UseFusedDropout = value;
            }
        }
    }

    /// <summary>Whether every adapter layer takes the fused first product in training on CUDA (<see cref="LoraLinear.UseFusedProduct"/>); setting it sets them all.</summary>
    public bool UseFusedProduct
    {
        get => Layers.Count > 0 && Layers.Values.All(l => l.UseFusedProduct);
        set
        {
            foreach (LoraLinear layer in Layers.Values)
            {
                layer.UseFusedProduct = value;
            }
        }
    }

    /// <summary>The trainable LoRA weights under PEFT's saved key names, in ordinal key order:
    /// <c>base_model.model.{module}.lora_A.weight</c> [r, in] and <c>….lora_B.weight</c> [out, r].</summary>
    /// <returns>Key and parameter pairs (the live parameters, not copies).</returns>
    public IReadOnlyList<KeyValuePair<string, Parameter>> NamedAdapterParameters()
    {
        var list = new List<KeyValuePair<string, Parameter>>();
        foreach (var (name, layer) in Layers)
        {
            list.Add(new(PeftKey(name, "lora_A"), layer.LoraA));
            list.Add(new(PeftKey(name, "lora_B"), layer.LoraB));
        }

        return list.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
    }

    /// <summary>The parameters an optimizer should train (every A and B).</summary>
    /// <returns>The live parameters.</returns>
    public IReadOnlyList<Parameter> AdapterParameters() => NamedAdapterParameters().Select(kv => kv.Value).ToList();

    /// <summary>PEFT's saved key of a LoRA weight: <c>base_model.model.{moduleName}.{matrix}.weight</c>.</summary>
    /// <param name="moduleName">The adapted module's name, e.g. <c>model.layers.0.self_attn.q_proj</c>.</param>
    /// <param name="matrix"><c>lora_A</c> or <c>lora_B</c>.</param>
    /// <returns>The key.</returns>
    public static string PeftKey(string moduleName, string matrix) => $"{PeftKeyPrefix}{moduleName}.{matrix}.weight";

    /// <summary>
    /// Counts parameters as PEFT's <c>print_trainable_parameters</c> does (see <see cref="TrainableParameterCount"/>:
    /// 4-bit weights count packed bytes × 2, their scales not at all). <c>ToString()</c> gives PEFT's line.
    /// </summary>
    /// <returns>The counts.</returns>
    public TrainableParameterCount TrainableParameters()
    {
        long trainable = 0;
        long all = 0;
        foreach (var p in Model.parameters())
        {
            all += p.numel();
            if (p.requires_grad)
            {
                trainable += p.numel();
            }
        }

        foreach (var (_, module) in ModuleTree.NamedModules(Model))
        {
            if (module is Linear4bit q)
            {
                foreach (var (name, buffer) in q.named_buffers(recurse: false))
                {
                    if (name == "weight")
                    {
                        all += buffer.numel() * buffer.ElementSize * 2;
                    }
                }
            }
        }

        return new TrainableParameterCount(trainable, all);
    }

    /// <summary>
    /// Merges every LoRA layer into its base (exact up to float rounding for 16/32-bit bases; lossy, with a warning, for
    /// 4-bit ones, each of which is dequantized and re-quantized).
    /// </summary>
    /// <param name="cancellationToken">
    /// Checked before each layer. Layers merged before the cancellation stay merged (<see cref="IsMerged"/> stays false
    /// until all are): call <see cref="Merge"/> again to finish (merged layers are skipped) or <see cref="Unmerge"/> to undo.
    /// </param>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public void Merge(CancellationToken cancellationToken = default)
    {
        foreach (var layer in Layers.Values)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!layer.Merged)
            {
                layer.Merge();
            }
        }
    }

    /// <summary>Subtracts every merged LoRA update from its base again.</summary>
    public void Unmerge()
    {
        foreach (var layer in Layers.Values)
        {
            if (layer.Merged)
            {
                layer.Unmerge();
            }
        }
    }

    /// <summary>Switches every LoRA layer off (the forward is the base model's); merged layers are unmerged first, as in PEFT.</summary>
    public void DisableAdapters()
    {
        if (Layers.Values.Any(l => l.Merged))
        {
            _logger.LogInformation("Unmerging LoRA layers before disabling them.");
            Unmerge();
        }

        foreach (var layer in Layers.Values)
        {
            layer.AdapterEnabled = false;
        }
    }

    /// <summary>Switches every LoRA layer back on.</summary>
    public void EnableAdapters()
    {
        foreach (var layer in Layers.Values)
        {
            layer.AdapterEnabled = true;
        }
    }

    /// <summary>
    /// Disables the adapters until the returned scope is disposed (PEFT's <c>with model.disable_adapter():</c>). Disposing
    /// the scope gives each layer back the enabled state it had when the scope was opened, so scopes nest and a layer
    /// that was already off stays off. Layers that were merged are unmerged (see <see cref="DisableAdapters"/>) and stay
    /// unmerged.
    /// </summary>
    /// <returns>A scope that restores each layer's previous state.</returns>
    public IDisposable AdaptersDisabled()
    {
        var previous = Layers.Values.Select(l => (Layer: l, Enabled: l.AdapterEnabled)).ToList();
        DisableAdapters();
        return new Restore(previous);
    }

    /// <summary>
    /// Merges every LoRA layer and puts the base layers back in place of the LoRA wrappers (PEFT's
    /// <c>merge_and_unload</c>). This handle is unusable afterwards.
    /// </summary>
    /// <param name="cancellationToken">
    /// Checked before each layer is merged (4-bit layers are re-quantized, the slow part). A cancellation leaves every
    /// LoRA wrapper in place, with the layers merged so far merged (see <see cref="Merge"/>); the base layers are put
    /// back only once all are merged.
    /// </param>
    /// <returns>The model, now without LoRA layers (its parameters stay frozen).</returns>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public MistralForCausalLM MergeAndUnload(CancellationToken cancellationToken = default)
    {
        Merge(cancellationToken);
        foreach (var (name, layer) in Layers)
        {
            ModuleTree.Replace(Model, name, layer.BaseLayer);
        }

        return Model;
    }

    private sealed class Restore(List<(LoraLinear Layer, bool Enabled)> previous) : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (_done)
            {
                return;
            }

            _done = true;
            foreach (var (layer, enabled) in previous)
            {
                layer.AdapterEnabled = enabled;
            }
        }
    }
}
