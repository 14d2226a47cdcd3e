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

    internal LoraModel(MistralForCausalLM model, LoraOptions options, IReadOnlyDictionary<string, LoraLinear> layers, ILogger logger)
    {
        Model = model;
        Options = options;
        Layers = layers;
        _logger = logger;
    }

    /// <summary>The adapted model (the same instance that was passed to the injector).</summary>
    public MistralForCausalLM Model { get; }

    /// <summary>The options the adapter was created with.</summary>
    public LoraOptions Options { get; }

    /// <summary>The LoRA layers by module name (e.g. <c>model.layers.0.self_attn.q_proj</c>), in ordinal name order.</summary>
    public IReadOnlyDictionary<string, LoraLinear> Layers { get; }

    /// <summary>The last name segments of the adapted modules, sorted (what PEFT saves as <c>target_modules</c>).</summary>
    public IReadOnlyList<string> TargetModuleNames =>
        Layers.Keys.Select(n => n[(n.LastIndexOf('.') + 1)..]).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

    /// <summary>Whether every LoRA layer is merged into its base.</summary>
    public bool IsMerged => Layers.Count > 0 && Layers.Values.All(l => l.Merged);

    /// <summary>Whether the LoRA layers are applied (false after <see cref="DisableAdapters"/>).</summary>
    public bool AdaptersEnabled => Layers.Values.Any(l => l.AdapterEnabled);

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

    /// <summary>Merges every LoRA layer into its base (exact up to float rounding for 16/32-bit bases; lossy, with a warning, for 4-bit ones).</summary>
    public void Merge()
    {
        foreach (var layer in Layers.Values)
        {
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

    /// <summary>Disables the adapters until the returned scope is disposed (PEFT's <c>with model.disable_adapter():</c>).</summary>
    /// <returns>A scope that re-enables them.</returns>
    public IDisposable AdaptersDisabled()
    {
        DisableAdapters();
        return new ReEnable(this);
    }

    /// <summary>
    /// Merges every LoRA layer and puts the base layers back in place of the LoRA wrappers (PEFT's
    /// <c>merge_and_unload</c>). This handle is unusable afterwards.
    /// </summary>
    /// <returns>The model, now without LoRA layers (its parameters stay frozen).</returns>
    public MistralForCausalLM MergeAndUnload()
    {
        Merge();
        foreach (var (name, layer) in Layers)
        {
            ModuleTree.Replace(Model, name, layer.BaseLayer);
        }

        return Model;
    }

    private sealed class ReEnable(LoraModel owner) : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (!_done)
            {
                owner.EnableAdapters();
                _done = true;
            }
        }
    }
}
