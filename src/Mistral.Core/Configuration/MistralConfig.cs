using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mistral.Core.Configuration;

/// <summary>
/// The architecture of a Mistral model, as Hugging Face's <c>config.json</c> describes it.
/// </summary>
/// <remarks>
/// Read a real checkpoint's file with <see cref="FromFile"/>: the defaults of this record are Mistral-7B-v0.1's
/// values, but a file always wins (HF's class defaults, such as <c>rms_norm_eps = 1e-6</c>, differ from the
/// published file's).
/// </remarks>
public sealed record MistralConfig
{
    /// <summary>Vocabulary size (<c>vocab_size</c>).</summary>
    public int VocabSize { get; init; } = 32000;

    /// <summary>Model width (<c>hidden_size</c>).</summary>
    public int HiddenSize { get; init; } = 4096;

    /// <summary>MLP width (<c>intermediate_size</c>).</summary>
    public int IntermediateSize { get; init; } = 14336;

    /// <summary>Number of decoder layers (<c>num_hidden_layers</c>).</summary>
    public int NumHiddenLayers { get; init; } = 32;

    /// <summary>Number of query heads (<c>num_attention_heads</c>).</summary>
    public int NumAttentionHeads { get; init; } = 32;

    /// <summary>Number of key/value heads (<c>num_key_value_heads</c>); grouped-query attention when smaller than the query heads.</summary>
    public int NumKeyValueHeads { get; init; } = 8;

    /// <summary>Per-head width (<c>head_dim</c>); when the file has none it is hidden / heads.</summary>
    public int HeadDim { get; init; } = 128;

    /// <summary>Largest position the model was trained for (<c>max_position_embeddings</c>).</summary>
    public int MaxPositionEmbeddings { get; init; } = 32768;

    /// <summary>Epsilon of RMSNorm (<c>rms_norm_eps</c>).</summary>
    public double RmsNormEps { get; init; } = 1e-5;

    /// <summary>RoPE base θ (<c>rope_theta</c>, or <c>rope_parameters.rope_theta</c> in newer files).</summary>
    public double RopeTheta { get; init; } = 10000.0;

    /// <summary>Sliding attention window W (a query at i sees keys j with i − W &lt; j ≤ i); null means full causal attention.</summary>
    public int? SlidingWindow { get; init; } = 4096;

    /// <summary>Whether <c>lm_head</c> shares the embedding matrix (<c>tie_word_embeddings</c>).</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Beginning-of-sequence token id.</summary>
    public int BosTokenId { get; init; } = 1;

    /// <summary>End-of-sequence token id.</summary>
    public int EosTokenId { get; init; } = 2;

    /// <summary>Padding token id, when the file names one.</summary>
    public int? PadTokenId { get; init; }

    /// <summary>Activation of the MLP (<c>hidden_act</c>); only <c>silu</c> is supported.</summary>
    public string HiddenAct { get; init; } = "silu";

    /// <summary>The dtype the checkpoint was saved in (<c>torch_dtype</c> / <c>dtype</c>), informational.</summary>
    public string? TorchDtype { get; init; } = "bfloat16";

    /// <summary>Standard deviation of the normal initialisation of linear and embedding weights (<c>initializer_range</c>).</summary>
    public double InitializerRange { get; init; } = 0.02;

    /// <summary>Most decoder layers <see cref="Validate"/> accepts (real checkpoints have at most a few hundred).</summary>
    public const int MaxLayers = 16384;

    /// <summary>Largest width (<c>vocab_size</c>, <c>hidden_size</c>, <c>intermediate_size</c>, <c>head_dim</c>) or head count <see cref="Validate"/> accepts.</summary>
    public const int MaxDimension = 1 << 24;

    /// <summary>Most parameters <see cref="Validate"/> accepts (2⁴², about 4.4 × 10¹²: 8.8 TB in bfloat16).</summary>
    public const long MaxParameters = 1L << 42;

    /// <summary>
    /// The number of parameters the model has (embedding, layers, final norm and <c>lm_head</c>), computed without
    /// allocating; saturates at <see cref="long.MaxValue"/>.
    /// </summary>
    public long ParameterCount
    {
        get
        {
            double count = ParameterCountOf(this);
            return count >= long.MaxValue ? long.MaxValue : (long)count;
        }
    }

    /// <summary>Mistral-7B-v0.1's published configuration.</summary>
    public static MistralConfig Mistral7B { get; } = new();

    /// <summary>Query heads per key/value head.</summary>
    public int KeyValueGroups => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Reads and validates a <c>config.json</c> file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">A field is missing, of the wrong type, or inconsistent; the message names it and the file.</exception>
    public static MistralConfig FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Model configuration not found: '{path}'.", path);
        }

        return FromJson(File.ReadAllText(path), path);
    }

    /// <summary>Parses and validates the text of a <c>config.json</c>.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="source">A name for the source used in error messages (a path, say).</param>
    /// <exception cref="InvalidDataException">A field is missing, of the wrong type, or inconsistent; the message names it.</exception>
    public static MistralConfig FromJson(string json, string source = "config.json")
    {
        JsonObject root;
        try
        {
            // JsonObject throws a bare ArgumentException on its first lookup when a key repeats: find it first, by name.
            using (JsonDocument doc = JsonDocument.Parse(json))
            {
                CheckDuplicateKeys(doc.RootElement, "", source);
            }

            root = JsonNode.Parse(json) as JsonObject
                ?? throw new InvalidDataException($"{source}: expected a JSON object at the top level.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON ({e.Message}).", e);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidDataException($"{source}: a key or string is not valid UTF-8 or holds a lone surrogate escape ({e.Message}).", e);
        }

        try
        {
            return FromObject(root, source);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidDataException($"{source}: a string value is not valid UTF-8 or holds a lone surrogate escape ({e.Message}).", e);
        }
    }

    private static MistralConfig FromObject(JsonObject root, string source)
    {

        int hidden = RequiredInt(root, "hidden_size", source);
        int heads = RequiredInt(root, "num_attention_heads", source);
        double theta = OptionalDouble(root, "rope_theta", source)
            ?? (root["rope_parameters"] is JsonObject rp ? OptionalDouble(rp, "rope_theta", source, "rope_parameters.") : null)
            ?? throw new InvalidDataException($"{source}: missing field 'rope_theta' (neither top-level nor inside 'rope_parameters').");

        CheckRopeType(root, source);
        var config = new MistralConfig
        {
            VocabSize = RequiredInt(root, "vocab_size", source),
            HiddenSize = hidden,
            IntermediateSize = RequiredInt(root, "intermediate_size", source),
            NumHiddenLayers = RequiredInt(root, "num_hidden_layers", source),
            NumAttentionHeads = heads,
            NumKeyValueHeads = OptionalInt(root, "num_key_value_heads", source) ?? heads,
            HeadDim = OptionalInt(root, "head_dim", source) ?? (heads > 0 ? hidden / heads : 0),
            MaxPositionEmbeddings = OptionalInt(root, "max_position_embeddings", source) ?? 32768,
            RmsNormEps = OptionalDouble(root, "rms_norm_eps", source)
                ?? throw new InvalidDataException($"{source}: missing field 'rms_norm_eps' (the class default differs from real checkpoints, so it is required)."),
            RopeTheta = theta,
            SlidingWindow = OptionalInt(root, "sliding_window", source),
            TieWordEmbeddings = OptionalBool(root, "tie_word_embeddings", source) ?? false,
            BosTokenId = OptionalInt(root, "bos_token_id", source) ?? 1,
            EosTokenId = OptionalInt(root, "eos_token_id", source) ?? 2,
            PadTokenId = OptionalInt(root, "pad_token_id", source),
            HiddenAct = OptionalString(root, "hidden_act", source) ?? "silu",
            TorchDtype = OptionalString(root, "torch_dtype", source) ?? OptionalString(root, "dtype", source),
            InitializerRange = OptionalDouble(root, "initializer_range", source) ?? 0.02,
        };
        config.Validate(source);
        return config;
    }

    /// <summary>Checks that the fields describe a buildable model.</summary>
    /// <param name="source">A name for the source used in error messages.</param>
    /// <exception cref="InvalidDataException">The message names the offending field.</exception>
    public void Validate(string source = "MistralConfig")
    {
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads");
        Positive(HeadDim, "head_dim");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        AtMost(VocabSize, MaxDimension, "vocab_size");
        AtMost(HiddenSize, MaxDimension, "hidden_size");
        AtMost(IntermediateSize, MaxDimension, "intermediate_size");
        AtMost(NumHiddenLayers, MaxLayers, "num_hidden_layers");
        AtMost(NumAttentionHeads, MaxDimension, "num_attention_heads");
        AtMost(NumKeyValueHeads, MaxDimension, "num_key_value_heads");
        AtMost(HeadDim, MaxDimension, "head_dim");
        double perLayer = ParameterCountOf(this with { NumHiddenLayers = 1 }) - ParameterCountOf(this with { NumHiddenLayers = 0 });
        double outer = ParameterCountOf(this with { NumHiddenLayers = 0 });
        double total = outer + (perLayer * NumHiddenLayers);
        if (total > MaxParameters)
        {
            string culprit = perLayer * NumHiddenLayers >= outer
                ? string.Create(CultureInfo.InvariantCulture, $"'num_hidden_layers' ({NumHiddenLayers}) × {perLayer:G4} parameters per layer (from 'hidden_size', 'intermediate_size', the heads and 'head_dim')")
                : $"'vocab_size' ({VocabSize}) × 'hidden_size' ({HiddenSize}) for the embedding and lm_head";
            throw new InvalidDataException(
                string.Create(CultureInfo.InvariantCulture, $"{source}: the configuration describes {total:G4} parameters, more than the {MaxParameters:G4} accepted; most come from {culprit}."));
        }

        if (!(InitializerRange >= 0) || double.IsInfinity(InitializerRange))
        {
            throw new InvalidDataException($"{source}: 'initializer_range' must be a non-negative number, got {InitializerRange.ToString(CultureInfo.InvariantCulture)}.");
        }

        if (NumAttentionHeads % NumKeyValueHeads != 0)
        {
            throw new InvalidDataException(
                $"{source}: 'num_attention_heads' ({NumAttentionHeads}) must be divisible by 'num_key_value_heads' ({NumKeyValueHeads}).");
        }

        if (HeadDim % 2 != 0)
        {
            throw new InvalidDataException($"{source}: 'head_dim' ({HeadDim}) must be even for rotary embeddings.");
        }

        if (!(RmsNormEps > 0) || double.IsInfinity(RmsNormEps))
        {
            throw new InvalidDataException($"{source}: 'rms_norm_eps' must be a positive number, got {RmsNormEps.ToString(CultureInfo.InvariantCulture)}.");
        }

        if (!(RopeTheta > 0) || double.IsInfinity(RopeTheta))
        {
            throw new InvalidDataException($"{source}: 'rope_theta' must be a positive number, got {RopeTheta.ToString(CultureInfo.InvariantCulture)}.");
        }

        if (SlidingWindow is <= 0)
        {
            throw new InvalidDataException($"{source}: 'sliding_window' must be positive or null, got {SlidingWindow}.");
        }

        if (TieWordEmbeddings)
        {
            throw new InvalidDataException(
                $"{source}: 'tie_word_embeddings' = true is not supported: Mistral models keep a separate lm_head (expected false).");
        }

        if (!string.Equals(HiddenAct, "silu", StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{source}: 'hidden_act' '{HiddenAct}' is not supported (expected 'silu').");
        }

        void AtMost(int value, int limit, string field)
        {
            if (value > limit)
            {
                throw new InvalidDataException($"{source}: '{field}' ({value}) is larger than any checkpoint holds (at most {limit} accepted).");
            }
        }

        void Positive(int value, string field)
        {
            if (value <= 0)
            {
                throw new InvalidDataException($"{source}: '{field}' must be a positive integer, got {value}.");
            }
        }
    }

    /// <summary>Writes this configuration as a Hugging Face <c>config.json</c> (what <c>MistralForCausalLM.from_pretrained</c> reads).</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("MistralForCausalLM"),
            ["model_type"] = "mistral",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["sliding_window"] = SlidingWindow,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["hidden_act"] = HiddenAct,
            ["attention_dropout"] = 0.0,
            ["initializer_range"] = InitializerRange,
            ["use_cache"] = true,
        };
        if (PadTokenId is int pad)
        {
            o["pad_token_id"] = pad;
        }

        if (TorchDtype is not null)
        {
            o["torch_dtype"] = TorchDtype;
        }

        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    // Only plain RoPE is implemented: a scaled variant (linear, dynamic, YaRN, …) must fail loudly, not run with wrong positions.
    private static void CheckRopeType(JsonObject root, string source)
    {
        if (root["rope_parameters"] is JsonObject rp && OptionalString(rp, "rope_type", source) is string type && type != "default")
        {
            throw new InvalidDataException($"{source}: 'rope_parameters.rope_type' = '{type}' is not supported (only 'default' RoPE is implemented).");
        }

        foreach (string key in (string[])["rope_scaling", "rope_parameters"])
        {
            JsonNode? node = Field(root, key);
            if (node is not null and not JsonObject)
            {
                throw new InvalidDataException(
                    $"{source}: '{key}' ({node.ToJsonString()}) is not supported: expected null or an object (only unscaled, 'default' RoPE is implemented).");
            }
        }

        if (root["rope_scaling"] is JsonObject scaling)
        {
            string? kind = OptionalString(scaling, "rope_type", source) ?? OptionalString(scaling, "type", source);
            if (kind != "default")
            {
                throw new InvalidDataException($"{source}: 'rope_scaling' ({scaling.ToJsonString()}) is not supported (only unscaled RoPE is implemented).");
            }
        }
    }

    private static double ParameterCountOf(MistralConfig c)
    {
        double h = c.HiddenSize;
        double q = (double)c.NumAttentionHeads * c.HeadDim;
        double kv = (double)c.NumKeyValueHeads * c.HeadDim;
        double attention = (h * q) + (2 * h * kv) + (q * h);
        double mlp = 3 * h * c.IntermediateSize;
        double layer = attention + mlp + (2 * h);
        return (2 * (double)c.VocabSize * h) + (c.NumHiddenLayers * layer) + h;
    }

    private static void CheckDuplicateKeys(JsonElement element, string prefix, string source)
    {
        if (element.ValueKind == JsonValueKind.Object)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty p in element.EnumerateObject())
            {
                if (!seen.Add(p.Name))
                {
                    throw new InvalidDataException($"{source}: key '{prefix}{p.Name}' appears more than once.");
                }

                CheckDuplicateKeys(p.Value, $"{prefix}{p.Name}.", source);
            }
        }
        else if (element.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (JsonElement item in element.EnumerateArray())
            {
                CheckDuplicateKeys(item, $"{prefix.TrimEnd('.')}[{i++}].", source);
            }
        }
    }

    private static JsonNode? Field(JsonObject o, string name) => o.TryGetPropertyValue(name, out JsonNode? n) ? n : null;

    private static int RequiredInt(JsonObject o, string name, string source) =>
        OptionalInt(o, name, source) ?? throw new InvalidDataException($"{source}: missing required field '{name}' (an integer).");

    private static int? OptionalInt(JsonObject o, string name, string source)
    {
        JsonNode? n = Field(o, name);
        if (n is null)
        {
            return null;
        }

        if (n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i))
        {
            return i;
        }

        if (n is JsonValue d && d.GetValueKind() == JsonValueKind.Number && d.TryGetValue(out double x) && x == Math.Floor(x) && Math.Abs(x) <= int.MaxValue)
        {
            return (int)x;
        }

        throw new InvalidDataException($"{source}: field '{name}' must be an integer, got {n.ToJsonString()}.");
    }

    private static double? OptionalDouble(JsonObject o, string name, string source, string prefix = "")
    {
        JsonNode? n = Field(o, name);
        if (n is null)
        {
            return null;
        }

        if (n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out double d))
        {
            return d;
        }

        throw new InvalidDataException($"{source}: field '{prefix}{name}' must be a number, got {n.ToJsonString()}.");
    }

    private static bool? OptionalBool(JsonObject o, string name, string source)
    {
        JsonNode? n = Field(o, name);
        if (n is null)
        {
            return null;
        }

        return n.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"{source}: field '{name}' must be true or false, got {n.ToJsonString()}."),
        };
    }

    private static string? OptionalString(JsonObject o, string name, string source)
    {
        JsonNode? n = Field(o, name);
        if (n is null)
        {
            return null;
        }

        return n.GetValueKind() == JsonValueKind.String
            ? n.GetValue<string>()
            : throw new InvalidDataException($"{source}: field '{name}' must be a string, got {n.ToJsonString()}.");
    }
}
