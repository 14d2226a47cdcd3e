using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Lora;

/// <summary>
/// Adds LoRA to a Mistral.Core model by module name, as PEFT's <c>LoraModel</c> does: every targeted linear layer
/// (a 16/32-bit <see cref="Mistral.Core.Modeling.Linear"/> or a 4-bit <see cref="Quantization.Linear4bit"/>) is swapped
/// with <see cref="ModuleTree.Replace"/> for a <see cref="LoraLinear"/> that wraps it; every other parameter is frozen.
/// The model's code knows nothing about it.
/// </summary>
public static class LoraInjector
{
    /// <summary>Injects LoRA layers into <paramref name="model"/> (in place) and freezes all base parameters.</summary>
    /// <param name="model">The model; it must not already contain LoRA layers.</param>
    /// <param name="options">The LoRA options (validated).</param>
    /// <param name="logger">Logs what was adapted and lossy 4-bit merges; null logs nothing.</param>
    /// <returns>The adapted model's LoRA handle.</returns>
    /// <exception cref="ArgumentException">An option is invalid, a target entry matches no linear layer (the message names it), or the exclusions remove every target.</exception>
    /// <exception cref="InvalidOperationException">The model already contains LoRA layers.</exception>
    public static LoraModel Inject(MistralForCausalLM model, LoraOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        logger ??= NullLogger.Instance;

        var all = ModuleTree.NamedModules(model).ToList();
        if (all.Any(m => m.Module is LoraLinear))
        {
            throw new InvalidOperationException("The model already contains LoRA layers; inject once per model.");
        }

        IReadOnlyList<string> targets = SelectTargets(all, options);
        foreach (var p in model.parameters())
        {
            p.requires_grad = false;
        }

        using Generator? generator = options.Seed is long seed ? new Generator((ulong)seed, model.Device) : null;
        var layers = new SortedDictionary<string, LoraLinear>(StringComparer.Ordinal);
        foreach (string name in targets)
        {
            var baseLayer = (nn.Module<Tensor, Tensor>)ModuleTree.Get(model, name);
            var lora = new LoraLinear(baseLayer, options, generator, logger);
            ModuleTree.Replace(model, name, lora);
            layers[name] = lora;
        }

        var result = new LoraModel(model, options, layers, ConfigTargetModules(all, options), logger);
        logger.LogInformation("LoRA r={R} alpha={Alpha} on {Count} layers; {Report}", options.R, options.Alpha, layers.Count, result.TrainableParameters());
        return result;
    }

    /// <summary>The names of the linear layers <paramref name="options"/> selects in <paramref name="model"/>, in model order.</summary>
    /// <param name="model">The model.</param>
    /// <param name="options">The options (validated).</param>
    /// <returns>Dotted module names such as <c>model.layers.0.self_attn.q_proj</c>.</returns>
    public static IReadOnlyList<string> SelectTargets(MistralForCausalLM model, LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return SelectTargets(ModuleTree.NamedModules(model).ToList(), options);
    }

    // PEFT's selection: a module is a target when it matches target_modules (list entry equal to its name or a dotted
    // suffix of it, or the pattern matching the whole name) and no exclude_modules entry (same list rule). Every list
    // entry must match some linear layer before exclusions are applied (so a saved list still loads when an exclusion
    // removes all of an entry's modules, as PEFT loads it), and exclusions must leave at least one target.
    private static IReadOnlyList<string> SelectTargets(List<(string Name, nn.Module Module)> modules, LoraOptions options)
    {
        var linears = LinearNames(modules);
        bool Kept(string name) => TargetModuleMatcher.MatchingEntry(name, options.ExcludeModules) is null;
        IReadOnlyList<string>? list = options.EffectiveTargetModules;
        List<string> matched;
        if (list is null)
        {
            matched = linears.Where(n => TargetModuleMatcher.FullMatch(n, options.TargetModulesPattern!)).ToList();
            if (matched.Count == 0)
            {
                throw new ArgumentException($"LoraOptions.TargetModulesPattern '{options.TargetModulesPattern}' matches no linear layer of the model.", nameof(options));
            }
        }
        else if (list.Count == 1 && list[0] == LoraOptions.AllLinear)
        {
            // PEFT's "all-linear" leaves out the output layer.
            matched = linears.Where(n => n != "lm_head").ToList();
        }
        else
        {
            var unmatched = list.Where(t => !linears.Any(n => TargetModuleMatcher.MatchingEntry(n, [t]) is not null)).ToList();
            if (unmatched.Count > 0)
            {
                throw new ArgumentException(
                    $"LoraOptions.TargetModules: no linear layer of the model matches [{string.Join(", ", unmatched)}] (known projections: {string.Join(", ", LoraOptions.AllProjections)}, lm_head).",
                    nameof(options));
            }

            matched = linears.Where(n => TargetModuleMatcher.MatchingEntry(n, list) is not null).ToList();
        }

        var kept = matched.Where(Kept).ToList();
        if (kept.Count == 0)
        {
            throw new ArgumentException(
                $"LoraOptions.ExcludeModules [{string.Join(", ", options.ExcludeModules)}] excludes every one of the {matched.Count} targeted linear layer(s).",
                nameof(options));
        }

        return kept;
    }

    private static List<string> LinearNames(List<(string Name, nn.Module Module)> modules) => modules
        .Where(m => m.Name.Length > 0 && m.Module is ILinearLayer && m.Module is nn.Module<Tensor, Tensor>)
        .Select(m => m.Name)
        .ToList();

    // What PEFT records as target_modules (see LoraModel.ConfigTargetModules); PEFT turns the list into a set, written
    // here in ordinal order so the file is deterministic.
    private static IReadOnlyList<string>? ConfigTargetModules(List<(string Name, nn.Module Module)> modules, LoraOptions options)
    {
        IReadOnlyList<string>? list = options.EffectiveTargetModules;
        if (list is null)
        {
            return null;
        }

        IEnumerable<string> entries = list.Count == 1 && list[0] == LoraOptions.AllLinear
            ? LinearNames(modules).Where(n => n != "lm_head").Select(n => n[(n.LastIndexOf('.') + 1)..])
            : list;
        return entries.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
    }
}
