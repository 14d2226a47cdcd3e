using System.Text.RegularExpressions;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp.Modules;

namespace Mistral.Peft.Training;

/// <summary>
/// Which parameters of a <see cref="MistralForCausalLM"/> <see cref="CausalLMTrainer"/> trains, by state-dict name
/// (<c>model.embed_tokens.weight</c>, <c>model.layers.0.self_attn.q_proj.weight</c>, <c>model.layers.0.input_layernorm.weight</c>,
/// <c>model.norm.weight</c>, <c>lm_head.weight</c>, …): all of them (<see cref="All"/>), those matching regular expressions
/// (<see cref="Matching"/>) or those a predicate accepts (<see cref="Where"/>).
/// </summary>
public sealed class TrainableSelection
{
    private readonly Func<string, bool>? _predicate;

    private TrainableSelection(Func<string, bool>? predicate, string description)
    {
        _predicate = predicate;
        Description = description;
    }

    /// <summary>
    /// Every parameter of the model (full-parameter training). The model must not hold 4-bit <see cref="Linear4bit"/>
    /// layers: their packed weights are not trainable parameters, so "all" could not be honoured. On a model with LoRA
    /// layers it includes both their base weights and the adapters.
    /// </summary>
    public static TrainableSelection All { get; } = new(null, "all parameters");

    /// <summary>What the selection selects, for logs and messages.</summary>
    public string Description { get; }

    /// <summary>
    /// The parameters whose full name matches one of <paramref name="patterns"/>: .NET regular expressions that must
    /// match the whole name (as PEFT matches a regex <c>target_modules</c>), e.g. <c>model\.layers\.1\..*</c> or
    /// <c>.*norm\.weight</c>.
    /// </summary>
    /// <param name="patterns">At least one non-empty regular expression.</param>
    /// <returns>The selection.</returns>
    /// <exception cref="ArgumentException">No pattern, an empty one, or one that is not a valid regular expression (named).</exception>
    public static TrainableSelection Matching(params string[] patterns)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        if (patterns.Length == 0)
        {
            throw new ArgumentException("patterns must hold at least one regular expression.", nameof(patterns));
        }

        var regexes = new List<Regex>(patterns.Length);
        foreach (string pattern in patterns)
        {
            if (string.IsNullOrEmpty(pattern))
            {
                throw new ArgumentException("patterns must not hold a null or empty pattern.", nameof(patterns));
            }

            try
            {
                regexes.Add(new Regex($"^(?:{pattern})$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)));
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"patterns: '{pattern}' is not a valid regular expression: {e.Message}", nameof(patterns), e);
            }
        }

        return new TrainableSelection(name => regexes.Any(r => r.IsMatch(name)),
            $"parameters matching {string.Join(" or ", patterns.Select(p => $"'{p}'"))}");
    }

    /// <summary>The parameters whose full name <paramref name="predicate"/> accepts.</summary>
    /// <param name="predicate">Called with each parameter's state-dict name.</param>
    /// <param name="description">What the predicate selects, for logs and messages.</param>
    /// <returns>The selection.</returns>
    public static TrainableSelection Where(Func<string, bool> predicate, string description = "parameters accepted by a predicate")
    {
        ArgumentNullException.ThrowIfNull(predicate);
        ArgumentException.ThrowIfNullOrWhiteSpace(description);
        return new TrainableSelection(predicate, description);
    }

    /// <inheritdoc />
    public override string ToString() => Description;

    /// <summary>
    /// The selected parameters of <paramref name="model"/> with their names, in <c>named_parameters</c> order.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// (parameter <c>selection</c>) Nothing is selected; or the selection is <see cref="All"/> and the model holds
    /// <see cref="Linear4bit"/> layers; or a selected parameter belongs to a <see cref="Linear4bit"/> layer.
    /// </exception>
    internal IReadOnlyList<(string Name, Parameter Parameter)> Resolve(MistralForCausalLM model)
    {
        var quantized = ModuleTree.NamedModules(model).Where(m => m.Module is Linear4bit).Select(m => m.Name).ToList();
        if (_predicate is null && quantized.Count > 0)
        {
            throw new ArgumentException(
                $"Full-parameter training needs a 16- or 32-bit model, but {Layers(quantized)} 4-bit Linear4bit: its packed NF4 weight is not a trainable parameter. " +
                "Load the model unquantized (float32, bfloat16 or float16) to train every weight, train LoRA adapters on the 4-bit model with LoraTrainer, " +
                "or select a subset of its 16/32-bit parameters (e.g. TrainableSelection.Matching(@\".*norm\\.weight\")).",
                "selection");
        }

        var all = model.named_parameters().ToList();
        var selected = all.Where(p => _predicate is null || _predicate(p.name)).ToList();
        if (selected.Count == 0)
        {
            string examples = string.Join(", ", all.Take(3).Select(p => $"'{p.name}'")) + (all.Count > 3 ? ", …" : string.Empty);
            string note = quantized.Count > 0 ? $" ({quantized.Count} Linear4bit layers hold their 4-bit weights as buffers, not parameters)" : string.Empty;
            throw new ArgumentException(
                $"The selection ({Description}) selects none of the model's {all.Count} parameters{note}; their names look like {examples}.", "selection");
        }

        foreach (var (name, _) in selected)
        {
            string? owner = quantized.FirstOrDefault(q => name.StartsWith(q + ".", StringComparison.Ordinal));
            if (owner is not null)
            {
                throw new ArgumentException(
                    $"The selection ({Description}) selects '{name}' of the 4-bit Linear4bit layer '{owner}'; 4-bit layers are not trained (train LoRA adapters on them with LoraTrainer).",
                    "selection");
            }
        }

        return selected;
    }

    private static string Layers(List<string> names) =>
        names.Count == 1 ? $"the layer '{names[0]}' is" : $"{names.Count} layers ('{names[0]}', …) are";
}
