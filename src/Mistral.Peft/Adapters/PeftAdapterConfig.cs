using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Peft.Lora;

namespace Mistral.Peft.Adapters;

/// <summary>
/// The LoRA part of PEFT's <c>adapter_config.json</c>. <see cref="Parse"/> accepts files written by PEFT 0.21 (which
/// carry many more keys): keys that change the adapter's math must hold their neutral value (e.g. <c>use_dora</c>
/// false, <c>rank_pattern</c> empty) or loading fails naming the key; keys that only concern initialisation or
/// bookkeeping are ignored; keys unknown here are ignored with a logged warning, as PEFT does.
/// </summary>
public sealed record PeftAdapterConfig
{
    /// <summary>Keys PEFT writes that do not change a loaded adapter's forward (initialisation, bookkeeping).</summary>
    private static readonly HashSet<string> IgnoredKeys = new(StringComparer.Ordinal)
    {
        "peft_version", "auto_mapping", "revision", "megatron_core", "loftq_config", "eva_config", "corda_config",
        "lora_ga_config", "runtime_config", "qalora_group_size", "ensure_weight_tying",
    };

    /// <summary>Keys PEFT writes whose non-neutral values change the math; only null/false/empty is accepted.</summary>
    private static readonly HashSet<string> MustBeNeutralKeys = new(StringComparer.Ordinal)
    {
        "use_dora", "lora_bias", "rank_pattern", "alpha_pattern", "layers_to_transform", "layers_pattern",
        "modules_to_save", "layer_replication", "trainable_token_indices", "target_parameters", "use_qalora",
        "alora_invocation_tokens", "use_bdlora", "megatron_config", "arrow_config", "monteclora_config",
        "kasa_config", "velora_config",
    };

    /// <summary><c>peft_type</c>; always <c>"LORA"</c> here.</summary>
    public string PeftType { get; init; } = "LORA";

    /// <summary><c>task_type</c>, <c>"CAUSAL_LM"</c> for Mistral.</summary>
    public string? TaskType { get; init; } = "CAUSAL_LM";

    /// <summary><c>r</c>.</summary>
    public int R { get; init; } = 8;

    /// <summary><c>lora_alpha</c>.</summary>
    public double LoraAlpha { get; init; } = 8;

    /// <summary><c>lora_dropout</c>.</summary>
    public double LoraDropout { get; init; }

    /// <summary><c>target_modules</c> as a list (null when absent or a pattern).</summary>
    public IReadOnlyList<string>? TargetModules { get; init; }

    /// <summary><c>target_modules</c> as a string: a regular expression matched against whole module names.</summary>
    public string? TargetModulesPattern { get; init; }

    /// <summary><c>exclude_modules</c> (list form).</summary>
    public IReadOnlyList<string>? ExcludeModules { get; init; }

    /// <summary><c>bias</c>; only <c>"none"</c> is supported.</summary>
    public string Bias { get; init; } = "none";

    /// <summary><c>fan_in_fan_out</c>; must be false (Mistral's layers store [out, in]).</summary>
    public bool FanInFanOut { get; init; }

    /// <summary><c>use_rslora</c>.</summary>
    public bool UseRsLora { get; init; }

    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary><c>inference_mode</c> (true in saved adapters).</summary>
    public bool InferenceMode { get; init; } = true;

    /// <summary><c>init_lora_weights</c> (true → <see cref="LoraInit.KaimingUniform"/>, "gaussian", false → <see cref="LoraInit.LinearDefault"/>).</summary>
    public LoraInit InitLoraWeights { get; init; } = LoraInit.KaimingUniform;

    /// <summary>
    /// The config of an adapter made with <paramref name="options"/>. <c>target_modules</c> is
    /// <paramref name="targetModules"/> (ignored when <see cref="LoraOptions.TargetModulesPattern"/> is set: the pattern is
    /// written); <c>exclude_modules</c> is <see cref="LoraOptions.ExcludeModules"/> as given (distinct, ordinal order, as
    /// PEFT stores both lists as sets), or null when empty.
    /// </summary>
    /// <param name="options">The LoRA options.</param>
    /// <param name="targetModules">
    /// The target list to record: what PEFT records is <see cref="LoraModel.ConfigTargetModules"/> (the user's entries as given,
    /// or the expansion of <c>all-linear</c>). Each entry is matched on load as PEFT matches it: a module whose full name
    /// equals it or ends with "." + it.
    /// </param>
    /// <param name="baseModelNameOrPath">The base model's id or folder, recorded for users; may be null.</param>
    /// <returns>The config.</returns>
    public static PeftAdapterConfig FromOptions(LoraOptions options, IReadOnlyList<string> targetModules, string? baseModelNameOrPath)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(targetModules);
        return new PeftAdapterConfig
        {
            R = options.R,
            LoraAlpha = options.Alpha,
            LoraDropout = options.Dropout,
            TargetModules = options.TargetModulesPattern is null ? targetModules : null,
            TargetModulesPattern = options.TargetModulesPattern,
            ExcludeModules = options.ExcludeModules.Count > 0 ? options.ExcludeModules.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList() : null,
            Bias = options.Bias,
            UseRsLora = options.UseRsLora,
            BaseModelNameOrPath = baseModelNameOrPath,
            InitLoraWeights = options.Init,
        };
    }

    /// <summary>The LoRA options that rebuild this adapter's layers (float32 adapter dtype, as PEFT loads it).</summary>
    /// <returns>Validated options.</returns>
    /// <exception cref="ArgumentException">A value is out of range; the message names the option.</exception>
    public LoraOptions ToLoraOptions() => new LoraOptions
    {
        R = R,
        Alpha = LoraAlpha,
        Dropout = LoraDropout,
        TargetModules = TargetModulesPattern is null ? TargetModules : null,
        TargetModulesPattern = TargetModulesPattern,
        ExcludeModules = ExcludeModules ?? [],
        UseRsLora = UseRsLora,
        Init = InitLoraWeights,
        Bias = Bias,
    }.Validate();

    /// <summary>
    /// The JSON PEFT reads: the portable keys plus the neutral values of PEFT's feature keys, sorted and indented by
    /// 2 as PEFT writes them. <c>peft_version</c> is not written (PEFT fills in its own).
    /// </summary>
    /// <returns>UTF-8 JSON text.</returns>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            var entries = new SortedDictionary<string, Action>(StringComparer.Ordinal)
            {
                ["alpha_pattern"] = () => { json.WriteStartObject(); json.WriteEndObject(); },
                ["base_model_name_or_path"] = () => WriteStringOrNull(json, BaseModelNameOrPath),
                ["bias"] = () => json.WriteStringValue(Bias),
                ["exclude_modules"] = () => WriteListOrNull(json, ExcludeModules),
                ["fan_in_fan_out"] = () => json.WriteBooleanValue(FanInFanOut),
                ["inference_mode"] = () => json.WriteBooleanValue(InferenceMode),
                ["init_lora_weights"] = () =>
                {
                    switch (InitLoraWeights)
                    {
                        case LoraInit.Gaussian: json.WriteStringValue("gaussian"); break;
                        case LoraInit.LinearDefault: json.WriteBooleanValue(false); break;
                        default: json.WriteBooleanValue(true); break;
                    }
                },
                ["layers_pattern"] = () => json.WriteNullValue(),
                ["layers_to_transform"] = () => json.WriteNullValue(),
                ["lora_alpha"] = () => json.WriteNumberValue(LoraAlpha),
                ["lora_bias"] = () => json.WriteBooleanValue(false),
                ["lora_dropout"] = () => json.WriteNumberValue(LoraDropout),
                ["modules_to_save"] = () => json.WriteNullValue(),
                ["peft_type"] = () => json.WriteStringValue(PeftType),
                ["r"] = () => json.WriteNumberValue(R),
                ["rank_pattern"] = () => { json.WriteStartObject(); json.WriteEndObject(); },
                ["revision"] = () => json.WriteNullValue(),
                ["target_modules"] = () =>
                {
                    if (TargetModulesPattern is not null)
                    {
                        json.WriteStringValue(TargetModulesPattern);
                    }
                    else
                    {
                        WriteListOrNull(json, TargetModules);
                    }
                },
                ["task_type"] = () => WriteStringOrNull(json, TaskType),
                ["use_dora"] = () => json.WriteBooleanValue(false),
                ["use_rslora"] = () => json.WriteBooleanValue(UseRsLora),
            };
            json.WriteStartObject();
            foreach (var (key, write) in entries)
            {
                json.WritePropertyName(key);
                write();
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    /// <summary>Parses an <c>adapter_config.json</c>.</summary>
    /// <param name="json">The file's text.</param>
    /// <param name="source">The file name used in messages.</param>
    /// <param name="logger">Receives warnings for unknown keys; null logs nothing.</param>
    /// <returns>The config.</returns>
    /// <exception cref="InvalidDataException">
    /// Malformed JSON, a missing required key, a value of the wrong type or out of range (e.g. <c>r</c> 0), or a
    /// <c>target_modules</c> pattern that is invalid or backtracks for longer than a second (the message names the file and key).
    /// </exception>
    /// <exception cref="NotSupportedException">A <c>peft_type</c> other than LORA, or a feature this library does not implement (named).</exception>
    public static PeftAdapterConfig Parse(string json, string source = "adapter_config.json", ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        logger ??= NullLogger.Instance;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON ({e.Message}).", e);
        }

        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{source}: expected a JSON object; got {root.ValueKind}.");
            }

            var props = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var p in root.EnumerateObject())
            {
                props[p.Name] = p.Value;
            }

            if (!props.TryGetValue("peft_type", out var peftType) || peftType.ValueKind != JsonValueKind.String)
            {
                throw new InvalidDataException($"{source}: 'peft_type' is missing or not a string; expected \"LORA\".");
            }

            string type = peftType.GetString()!;
            if (type != "LORA")
            {
                throw new NotSupportedException($"{source}: peft_type '{type}' is not supported; only 'LORA' adapters can be loaded.");
            }

            string? taskType = OptionalString(props, "task_type", source);
            if (taskType is not null && taskType != "CAUSAL_LM")
            {
                logger.LogWarning("{Source}: task_type is '{TaskType}', not 'CAUSAL_LM'; loading the LoRA weights onto a causal LM anyway.", source, taskType);
            }

            foreach (string key in MustBeNeutralKeys)
            {
                if (props.TryGetValue(key, out var v) && !IsNeutral(v))
                {
                    throw new NotSupportedException($"{source}: '{key}' is {v.GetRawText()}; this library supports only plain LoRA ('{key}' must be null, false or empty).");
                }
            }

            string bias = OptionalString(props, "bias", source) ?? "none";
            if (bias != "none")
            {
                throw new NotSupportedException($"{source}: bias '{bias}' is not supported; only \"none\".");
            }

            bool fanInFanOut = OptionalBool(props, "fan_in_fan_out", source) ?? false;
            if (fanInFanOut)
            {
                throw new NotSupportedException($"{source}: fan_in_fan_out true is not supported (Mistral's linear weights are [out, in]).");
            }

            IReadOnlyList<string>? targets = null;
            string? targetPattern = null;
            if (props.TryGetValue("target_modules", out var tm))
            {
                switch (tm.ValueKind)
                {
                    case JsonValueKind.Null:
                        break;
                    case JsonValueKind.String:
                        targetPattern = tm.GetString();
                        break;
                    case JsonValueKind.Array:
                        targets = StringList(tm, "target_modules", source);
                        break;
                    default:
                        throw new InvalidDataException($"{source}: 'target_modules' must be a list of names, a string pattern or null; got {tm.ValueKind}.");
                }
            }

            IReadOnlyList<string>? excludes = null;
            if (props.TryGetValue("exclude_modules", out var em) && em.ValueKind != JsonValueKind.Null)
            {
                if (em.ValueKind != JsonValueKind.Array)
                {
                    throw new NotSupportedException($"{source}: 'exclude_modules' must be a list (a string pattern is not supported); got {em.ValueKind}.");
                }

                excludes = StringList(em, "exclude_modules", source);
                if (excludes.Count == 0)
                {
                    excludes = null;
                }
            }

            LoraInit init = LoraInit.KaimingUniform;
            if (props.TryGetValue("init_lora_weights", out var ilw))
            {
                if (ilw.ValueKind == JsonValueKind.False)
                {
                    init = LoraInit.LinearDefault;
                }
                else if (ilw.ValueKind == JsonValueKind.String)
                {
                    string s = ilw.GetString()!;
                    if (string.Equals(s, "gaussian", StringComparison.OrdinalIgnoreCase))
                    {
                        init = LoraInit.Gaussian;
                    }
                    else
                    {
                        logger.LogWarning("{Source}: init_lora_weights '{Init}' only concerns how the adapter was initialised; the saved weights are loaded as they are.", source, s);
                    }
                }
            }

            var known = new HashSet<string>(StringComparer.Ordinal)
            {
                "peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "bias",
                "fan_in_fan_out", "use_rslora", "base_model_name_or_path", "inference_mode", "init_lora_weights",
            };
            var unknown = props.Keys.Where(k => !known.Contains(k) && !IgnoredKeys.Contains(k) && !MustBeNeutralKeys.Contains(k))
                .Order(StringComparer.Ordinal).ToList();
            if (unknown.Count > 0)
            {
                logger.LogWarning("{Source}: ignoring unknown key(s) {Keys}.", source, string.Join(", ", unknown));
            }

            var config = new PeftAdapterConfig
            {
                PeftType = type,
                TaskType = taskType,
                R = RequiredInt(props, "r", source),
                LoraAlpha = RequiredNumber(props, "lora_alpha", source),
                LoraDropout = OptionalNumber(props, "lora_dropout", source) ?? 0.0,
                TargetModules = targets,
                TargetModulesPattern = targetPattern,
                ExcludeModules = excludes,
                Bias = bias,
                FanInFanOut = fanInFanOut,
                UseRsLora = OptionalBool(props, "use_rslora", source) ?? false,
                BaseModelNameOrPath = OptionalString(props, "base_model_name_or_path", source),
                InferenceMode = OptionalBool(props, "inference_mode", source) ?? true,
                InitLoraWeights = init,
            };
            Check(config, source);
            return config;
        }
    }

    // The values must make a valid adapter: fail here, naming the file and key, not later with only the option's name.
    private static void Check(PeftAdapterConfig config, string source)
    {
        try
        {
            config.ToLoraOptions();
            if (config.TargetModulesPattern is string pattern)
            {
                foreach (string name in TargetModuleMatcher.RepresentativeNames)
                {
                    TargetModuleMatcher.FullMatch(name, pattern);
                }
            }
        }
        catch (ArgumentException e)
        {
            string key = e.ParamName switch
            {
                nameof(LoraOptions.R) => "r",
                nameof(LoraOptions.Alpha) => "lora_alpha",
                nameof(LoraOptions.Dropout) => "lora_dropout",
                nameof(LoraOptions.TargetModules) or nameof(LoraOptions.TargetModulesPattern) or "pattern" => "target_modules",
                nameof(LoraOptions.ExcludeModules) => "exclude_modules",
                nameof(LoraOptions.Bias) => "bias",
                nameof(LoraOptions.Init) => "init_lora_weights",
                _ => e.ParamName ?? "?",
            };
            throw new InvalidDataException($"{source}: '{key}' is invalid: {e.Message}", e);
        }
    }

    private static bool IsNeutral(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.False => true,
        JsonValueKind.Object => !v.EnumerateObject().Any(),
        JsonValueKind.Array => v.GetArrayLength() == 0,
        _ => false,
    };

    private static IReadOnlyList<string> StringList(JsonElement array, string key, string source)
    {
        var list = new List<string>();
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw new InvalidDataException($"{source}: '{key}' must contain only strings; found {item.GetRawText()}.");
            }

            list.Add(item.GetString()!);
        }

        return list;
    }

    private static int RequiredInt(Dictionary<string, JsonElement> props, string key, string source)
    {
        if (!props.TryGetValue(key, out var v) || v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i))
        {
            throw new InvalidDataException($"{source}: '{key}' is missing or not an integer.");
        }

        return i;
    }

    private static double RequiredNumber(Dictionary<string, JsonElement> props, string key, string source) =>
        OptionalNumber(props, key, source) ?? throw new InvalidDataException($"{source}: '{key}' is missing.");

    private static double? OptionalNumber(Dictionary<string, JsonElement> props, string key, string source)
    {
        if (!props.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return v.ValueKind == JsonValueKind.Number
            ? v.GetDouble()
            : throw new InvalidDataException($"{source}: '{key}' must be a number; got {v.GetRawText()}.");
    }

    private static bool? OptionalBool(Dictionary<string, JsonElement> props, string key, string source)
    {
        if (!props.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"{source}: '{key}' must be true or false; got {v.GetRawText()}."),
        };
    }

    private static string? OptionalString(Dictionary<string, JsonElement> props, string key, string source)
    {
        if (!props.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return v.ValueKind == JsonValueKind.String
            ? v.GetString()
            : throw new InvalidDataException($"{source}: '{key}' must be a string; got {v.GetRawText()}.");
    }

    private static void WriteStringOrNull(Utf8JsonWriter json, string? value)
    {
        if (value is null)
        {
            json.WriteNullValue();
        }
        else
        {
            json.WriteStringValue(value);
        }
    }

    private static void WriteListOrNull(Utf8JsonWriter json, IReadOnlyList<string>? values)
    {
        if (values is null)
        {
            json.WriteNullValue();
            return;
        }

        json.WriteStartArray();
        foreach (string v in values)
        {
            json.WriteStringValue(v);
        }

        json.WriteEndArray();
    }
}
