using System.Text.RegularExpressions;
using TorchSharp;

namespace Mistral.Peft.Lora;

/// <summary>
/// Options of a LoRA adapter, mirroring PEFT's <c>LoraConfig</c> (<c>r</c>, <c>lora_alpha</c>, <c>lora_dropout</c>,
/// <c>target_modules</c>, <c>use_rslora</c>, <c>init_lora_weights</c>, <c>bias</c>). Defaults are PEFT's (r 8, alpha 8,
/// dropout 0, <c>q_proj</c>/<c>v_proj</c> for Mistral, float32 adapter weights). Call <see cref="Validate"/> (the
/// injector does) to get an exception naming the first invalid option.
/// </summary>
public sealed record LoraOptions
{
    /// <summary>The <see cref="TargetModules"/> entry that selects every linear layer except <c>lm_head</c> (PEFT's <c>"all-linear"</c>).</summary>
    public const string AllLinear = "all-linear";

    /// <summary>PEFT's default targets for Mistral when <c>target_modules</c> is not given.</summary>
    public static IReadOnlyList<string> DefaultTargetModules { get; } = ["q_proj", "v_proj"];

    /// <summary>Every linear projection of a Mistral decoder layer.</summary>
    public static IReadOnlyList<string> AllProjections { get; } = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>Rank r of A [r, in] and B [out, r]; at least 1. Default 8.</summary>
    public int R { get; init; } = 8;

    /// <summary>lora_alpha; the update is scaled by alpha / r (alpha / √r with <see cref="UseRsLora"/>). Positive. Default 8.</summary>
    public double Alpha { get; init; } = 8;

    /// <summary>Dropout probability on the LoRA branch's input, applied only in training mode; in [0, 1). Default 0.</summary>
    public double Dropout { get; init; }

    /// <summary>
    /// Module names to adapt, matched as PEFT matches a list: a module named <c>N</c> is adapted when <c>N</c> equals an
    /// entry or ends with <c>"." + entry</c> (so <c>q_proj</c> selects every layer's <c>self_attn.q_proj</c>). The single
    /// entry <see cref="AllLinear"/> selects every linear layer except <c>lm_head</c>. Null (default) means
    /// <see cref="DefaultTargetModules"/> unless <see cref="TargetModulesPattern"/> is set. Every entry must match at least one
    /// linear layer (before <see cref="ExcludeModules"/> is applied, as PEFT loads a saved list), and the exclusions must leave at least one.
    /// </summary>
    public IReadOnlyList<string>? TargetModules { get; init; }

    /// <summary>
    /// A regular expression that must match a module's whole name (PEFT's string <c>target_modules</c>,
    /// <c>re.fullmatch</c>); mutually exclusive with <see cref="TargetModules"/>.
    /// </summary>
    public string? TargetModulesPattern { get; init; }

    /// <summary>Module names excluded from adaptation (PEFT's <c>exclude_modules</c> list: equal or dotted suffix). Default none.</summary>
    public IReadOnlyList<string> ExcludeModules { get; init; } = [];

    /// <summary>Rank-stabilised LoRA: scale by alpha / √r instead of alpha / r (PEFT's <c>use_rslora</c>). Default false.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>Initialisation of A and B. Default <see cref="LoraInit.KaimingUniform"/> (PEFT's default).</summary>
    public LoraInit Init { get; init; } = LoraInit.KaimingUniform;

    /// <summary>dtype of A and B and of the LoRA branch's computation: Float32 (default, as PEFT), BFloat16 or Float16.</summary>
    public torch.ScalarType AdapterDtype { get; init; } = torch.ScalarType.Float32;

    /// <summary>Which biases train (PEFT's <c>bias</c>); only <c>"none"</c> is supported.</summary>
    public string Bias { get; init; } = "none";

    /// <summary>Seed of the initialisation (a private generator per injection); null uses TorchSharp's default generator.</summary>
    public long? Seed { get; init; }

    /// <summary>The factor applied to B·A: alpha / r, or alpha / √r with <see cref="UseRsLora"/>.</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(R) : Alpha / R;

    /// <summary>The study's classification setting: r 8, alpha 16, dropout 0.1, q_proj and v_proj.</summary>
    public static LoraOptions Classification { get; } = new() { R = 8, Alpha = 16, Dropout = 0.1, TargetModules = ["q_proj", "v_proj"] };

    /// <summary>The study's summarization setting: r 64, alpha 16, dropout 0.1, q_proj and v_proj.</summary>
    public static LoraOptions Summarization { get; } = new() { R = 64, Alpha = 16, Dropout = 0.1, TargetModules = ["q_proj", "v_proj"] };

    /// <summary>The study's settings by name: <c>"classification"</c> or <c>"summarization"</c> (case-insensitive).</summary>
    /// <param name="name">The preset's name.</param>
    /// <returns>The preset.</returns>
    /// <exception cref="ArgumentException">Unknown name; the message lists the known ones.</exception>
    public static LoraOptions Preset(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "classification" => Classification,
            "summarization" => Summarization,
            _ => throw new ArgumentException($"Unknown LoRA preset '{name}'; expected 'classification' or 'summarization'.", nameof(name)),
        };
    }

    /// <summary>The target list in effect: <see cref="TargetModules"/>, or <see cref="DefaultTargetModules"/> when neither it nor a pattern is set; null when a pattern is used.</summary>
    public IReadOnlyList<string>? EffectiveTargetModules =>
        TargetModules ?? (TargetModulesPattern is null ? DefaultTargetModules : null);

    /// <summary>Checks every option and throws naming the first invalid one.</summary>
    /// <returns>This instance, for chaining.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names it and what was expected.</exception>
    public LoraOptions Validate()
    {
        if (R < 1)
        {
            throw new ArgumentException($"LoraOptions.R must be at least 1; got {R}.", nameof(R));
        }

        if (!(Alpha > 0) || double.IsInfinity(Alpha))
        {
            throw new ArgumentException($"LoraOptions.Alpha must be a positive finite number; got {Alpha}.", nameof(Alpha));
        }

        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw new ArgumentException($"LoraOptions.Dropout must be in [0, 1); got {Dropout}.", nameof(Dropout));
        }

        if (TargetModules is not null && TargetModulesPattern is not null)
        {
            throw new ArgumentException("LoraOptions.TargetModules and LoraOptions.TargetModulesPattern are mutually exclusive; set one.", nameof(TargetModules));
        }

        if (TargetModules is not null)
        {
            if (TargetModules.Count == 0)
            {
                throw new ArgumentException("LoraOptions.TargetModules must not be empty (null means q_proj and v_proj).", nameof(TargetModules));
            }

            foreach (string t in TargetModules)
            {
                if (string.IsNullOrWhiteSpace(t))
                {
                    throw new ArgumentException("LoraOptions.TargetModules must not contain empty names.", nameof(TargetModules));
                }
            }

            if (TargetModules.Contains(AllLinear, StringComparer.Ordinal) && TargetModules.Count != 1)
            {
                throw new ArgumentException($"LoraOptions.TargetModules: '{AllLinear}' must be the only entry; got [{string.Join(", ", TargetModules)}].", nameof(TargetModules));
            }
        }

        if (TargetModulesPattern is not null)
        {
            try
            {
                _ = new Regex(TargetModulesPattern, RegexOptions.CultureInvariant);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"LoraOptions.TargetModulesPattern is not a valid regular expression: {e.Message}", nameof(TargetModulesPattern), e);
            }
        }

        if (ExcludeModules is null || ExcludeModules.Any(string.IsNullOrWhiteSpace))
        {
            throw new ArgumentException("LoraOptions.ExcludeModules must be a list of non-empty names.", nameof(ExcludeModules));
        }

        if (!Enum.IsDefined(Init))
        {
            throw new ArgumentException($"LoraOptions.Init is not a known initialisation: {Init}.", nameof(Init));
        }

        if (AdapterDtype is not (torch.ScalarType.Float32 or torch.ScalarType.BFloat16 or torch.ScalarType.Float16))
        {
            throw new ArgumentException($"LoraOptions.AdapterDtype must be Float32, BFloat16 or Float16; got {AdapterDtype}.", nameof(AdapterDtype));
        }

        if (Bias != "none")
        {
            throw new ArgumentException($"LoraOptions.Bias must be \"none\" (training biases is not supported); got \"{Bias}\".", nameof(Bias));
        }

        return this;
    }
}
