using System.Globalization;
namespace Mistral.Core.Generation;

/// <summary>How text is generated. Validate with <see cref="Validate"/>; every message names the option.</summary>
public sealed record GenerationOptions
{
    /// <summary>The largest <see cref="MaxNewTokens"/> accepted (2³⁰, so that prompt + new tokens fit an int).</summary>
    public const int MaxTokens = 1 << 30;

    /// <summary>Most new tokens per sequence (at most <see cref="MaxTokens"/>; the KV cache grows as tokens come, it is not allocated for all of them up front).</summary>
    public int MaxNewTokens { get; init; } = 20;

    /// <summary>Sample from the distribution (true) or take the arg-max (false, greedy).</summary>
    public bool DoSample { get; init; }

    /// <summary>Softmax temperature when sampling (HF: logits / temperature).</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Keep only the k most likely tokens when sampling; 0 disables.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 disables.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>
    /// HF's repetition penalty (&gt; 1 discourages tokens already in the sequence); 1 disables. It applies to the row's
    /// prompt and generated tokens; unlike HF, left padding of a batch is not counted (HF also penalises the pad id).
    /// </summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>Seed of the sampling generator (null: nondeterministic).</summary>
    public ulong? Seed { get; init; }

    /// <summary>Token ids that end a sequence. <see cref="TextGenerator"/> adds its tokenizer's EOS id; <see cref="TokenGenerator"/> uses exactly this list (empty: never stops early).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Stop when the generated text contains one of these (the text is cut before it). Needs a tokenizer.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Pad token id for left padding in batches (the study's convention: pad = eos = 2).</summary>
    public int PadTokenId { get; init; } = 2;

    /// <summary>Greedy decoding.</summary>
    public static GenerationOptions Greedy { get; } = new();

    /// <summary>
    /// The study's classification setting: 20 new tokens, sampling with top_p 0.95 and temperature 1e-3 (≈ greedy), plus
    /// HF's implicit <c>top_k = 50</c> (the default of <c>GenerationConfig</c>, which the study did not override).
    /// </summary>
    public static GenerationOptions StudyClassification { get; } = new() { MaxNewTokens = 20, DoSample = true, TopP = 0.95, Temperature = 1e-3, TopK = 50 };

    /// <summary>The study's zero/few-shot summarization setting: 100 new tokens, top_p 0.95, temperature 1e-3 (and HF's top_k 50).</summary>
    public static GenerationOptions StudySummarization { get; } = new() { MaxNewTokens = 100, DoSample = true, TopP = 0.95, Temperature = 1e-3, TopK = 50 };

    /// <summary>The study's baseline summarization setting: 50 new tokens, top_p 0.95, temperature 1e-3.</summary>
    public static GenerationOptions StudySummarizationBaseline { get; } = StudySummarization with { MaxNewTokens = 50 };

    /// <summary>The study's fine-tuned summarization setting: 100 new tokens, top_p 0.9, temperature 1e-2 (and HF's top_k 50).</summary>
    public static GenerationOptions StudySummarizationFineTuned { get; } = new() { MaxNewTokens = 100, DoSample = true, TopP = 0.9, Temperature = 1e-2, TopK = 50 };

    /// <summary>The preset names <see cref="Preset"/> accepts.</summary>
    public static IReadOnlyList<string> PresetNames { get; } =
        ["greedy", "study-classification", "study-summarization", "study-summarization-baseline", "study-summarization-fine-tuned"];

    /// <summary>A preset by name (see <see cref="PresetNames"/>; case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the known ones.</exception>
    public static GenerationOptions Preset(string name) => name?.ToLowerInvariant() switch
    {
        "greedy" => Greedy,
        "study-classification" => StudyClassification,
        "study-summarization" => StudySummarization,
        "study-summarization-baseline" => StudySummarizationBaseline,
        "study-summarization-fine-tuned" => StudySummarizationFineTuned,
        _ => throw new ArgumentException($"Unknown generation preset '{name}'; known: {string.Join(", ", PresetNames)}.", nameof(name)),
    };

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Names the offending option.</exception>
    public void Validate()
    {
        if (MaxNewTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "MaxNewTokens must be ≥ 0.");
        }

        if (MaxNewTokens > MaxTokens)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, $"MaxNewTokens must be at most {MaxTokens} (prompt + new tokens must fit an int).");
        }

        if (!(Temperature > 0) || double.IsInfinity(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be a positive finite number.");
        }

        if (DoSample && float.IsInfinity((float)(1.0 / Temperature)))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature,
                string.Create(CultureInfo.InvariantCulture,
                    $"Temperature {Temperature:G3} is too small: logits / Temperature overflows float32 (1 / Temperature must be below {float.MaxValue:G3}); use DoSample = false for greedy decoding."));
        }

        if (TopK < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "TopK must be ≥ 0 (0 disables it).");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1].");
        }

        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty))
        {
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "RepetitionPenalty must be a positive finite number.");
        }

        if (StopStrings.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentOutOfRangeException(nameof(StopStrings), "StopStrings must not contain empty strings.");
        }
    }
}
