using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mistral.Pipeline;

/// <summary>
/// One evaluation: the task's metrics, every prediction, how prompts fitted the context, and the study's four pillars
/// (quality, time to train, cost to train, inference cost). Renders as Markdown and JSON; predictions as JSONL.
/// </summary>
public sealed class EvaluationReport
{
    internal EvaluationReport(string task, EvaluationMode mode, string model, TaskMetrics metrics, IReadOnlyList<ExamplePrediction> predictions,
        PromptFitSummary prompts, FourPillars pillars, TrainingSummary? training)
    {
        Task = task;
        Mode = mode;
        Model = model;
        Metrics = metrics;
        Predictions = predictions;
        Prompts = prompts;
        Pillars = pillars;
        Training = training;
    }

    /// <summary>The task's name.</summary>
    public string Task { get; }

    /// <summary>How the model was asked.</summary>
    public EvaluationMode Mode { get; }

    /// <summary>The checkpoint folder (and adapter) evaluated.</summary>
    public string Model { get; }

    /// <summary>The task's metrics (<see cref="ClassificationTaskMetrics"/>, <see cref="SummarizationTaskMetrics"/> or a custom task's).</summary>
    public TaskMetrics Metrics { get; }

    /// <summary>One prediction per test example, in test order.</summary>
    public IReadOnlyList<ExamplePrediction> Predictions { get; }

    /// <summary>How the prompts fitted the context.</summary>
    public PromptFitSummary Prompts { get; }

    /// <summary>Quality, time and cost to train, inference cost.</summary>
    public FourPillars Pillars { get; }

    /// <summary>The training run of this pipeline, when it was trained here.</summary>
    public TrainingSummary? Training { get; }

    /// <summary>The report as Markdown: metrics, the four pillars and prompt fitting.</summary>
    /// <returns>The Markdown text.</returns>
    public string ToMarkdown()
    {
        var ci = CultureInfo.InvariantCulture;
        var p = Pillars;
        var sb = new StringBuilder();
        sb.Append(ci, $"## {Task}, {Mode}: {Predictions.Count} examples\n\n");
        sb.Append(ci, $"Model: `{Model}` on {p.Device}\n\n");
        sb.Append(Metrics.ToMarkdown()).Append('\n');
        sb.Append("| pillar | value |\n|---|---|\n");
        sb.Append(ci, $"| quality | {string.Join(", ", p.Quality.Select(kv => string.Create(ci, $"{kv.Key} {kv.Value:0.####}")))} |\n");
        if (Training is { } t)
        {
            sb.Append(ci, $"| time to train | {Duration(t.Elapsed)} ({t.StepsCompleted}/{t.TotalSteps} steps{(t.Cancelled ? ", **cancelled**" : string.Empty)}, {t.TokensPerSecond:N0} tokens/s) |\n");
            sb.Append(ci, $"| training memory peak | {Bytes(t.PeakMemoryBytes)} ({t.MemoryKind}) |\n");
            sb.Append(ci, $"| cost to train | {Money(p.TrainingCost)} |\n");
        }
        else
        {
            sb.Append(Mode.UsesAdapter ? "| time to train | not trained in this pipeline (adapter loaded) |\n" : "| time to train | none: the base model, adapter off |\n");
        }

        sb.Append(ci, $"| inference | {Duration(p.InferenceTime)} total, {p.ExamplesPerSecond:0.##} examples/s, {p.GeneratedTokensPerSecond:0.#} generated tokens/s |\n");
        sb.Append(ci, $"| latency per example | p50 {p.LatencyP50Milliseconds:0.#} ms, p95 {p.LatencyP95Milliseconds:0.#} ms |\n");
        sb.Append(ci, $"| inference memory peak | {Bytes(p.InferencePeakMemoryBytes)} ({p.MemoryKind}) |\n");
        sb.Append(ci, $"| inference cost per 1,000 examples | {Money(p.InferenceCostPer1000)} |\n\n");
        var f = Prompts;
        sb.Append(ci, $"Prompts: mean {f.MeanPromptTokens:0.#} tokens, longest {f.MaxPromptTokens}, context {f.ContextLength} with {f.MaxNewTokens} tokens reserved for the answer; ");
        sb.Append(ci, $"{f.PromptsShortened} shortened ({f.FewShotExamplesDropped} few-shot examples dropped, {f.InputsTruncated} inputs truncated)");
        if (Mode.Kind == EvaluationModeKind.FewShot)
        {
            sb.Append(ci, $"; {f.MeanFewShotExamples:0.##} examples per prompt on average");
        }

        sb.Append(".\n");
        return sb.ToString();

        string Money(decimal? m) => m is decimal v ? string.Create(ci, $"{v:0.####} {p.Cost!.Currency} (at {p.Cost.PricePerHour} {p.Cost.Currency}/h)") : "no price given";
    }

    /// <summary>The report as a JSON object (metrics, pillars, prompt fitting, training; predictions are in <see cref="WritePredictions"/>).</summary>
    /// <returns>The JSON node.</returns>
    public JsonObject ToJsonObject()
    {
        var p = Pillars;
        var o = new JsonObject
        {
            ["task"] = Task,
            ["mode"] = Mode.ToString(),
            ["model"] = Model,
            ["examples"] = Predictions.Count,
            ["metrics"] = Metrics.ToJson(),
            ["pillars"] = new JsonObject
            {
                ["device"] = p.Device,
                ["quality"] = new JsonObject(p.Quality.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
                ["training_seconds"] = p.TrainingTime?.TotalSeconds,
                ["training_tokens_per_second"] = p.TrainingTokensPerSecond,
                ["training_peak_memory_bytes"] = p.TrainingPeakMemoryBytes,
                ["training_cost"] = p.TrainingCost,
                ["inference_seconds"] = p.InferenceTime.TotalSeconds,
                ["examples_per_second"] = p.ExamplesPerSecond,
                ["generated_tokens_per_second"] = p.GeneratedTokensPerSecond,
                ["latency_p50_ms"] = p.LatencyP50Milliseconds,
                ["latency_p95_ms"] = p.LatencyP95Milliseconds,
                ["inference_peak_memory_bytes"] = p.InferencePeakMemoryBytes,
                ["memory_kind"] = p.MemoryKind,
                ["inference_cost_per_1000"] = p.InferenceCostPer1000,
                ["price_per_hour"] = p.Cost?.PricePerHour,
                ["currency"] = p.Cost?.Currency,
            },
            ["prompts"] = JsonSerializer.SerializeToNode(Prompts, JsonOptions),
        };
        if (Training is { } t)
        {
            o["training"] = new JsonObject
            {
                ["cancelled"] = t.Cancelled,
                ["steps_completed"] = t.StepsCompleted,
                ["total_steps"] = t.TotalSteps,
                ["examples"] = t.Examples,
                ["data"] = t.Data,
                ["seconds"] = t.Elapsed.TotalSeconds,
                ["tokens"] = t.Tokens,
                ["tokens_per_second"] = t.TokensPerSecond,
                ["peak_memory_bytes"] = t.PeakMemoryBytes,
                ["epoch_losses"] = new JsonArray([.. t.EpochLosses.Select(l => (JsonNode?)JsonValue.Create(l))]),
                ["loss_per_step"] = new JsonArray([.. t.Steps.Select(s => (JsonNode?)JsonValue.Create(s.Loss))]),
                ["checkpoints"] = new JsonArray([.. t.Checkpoints.Select(c => (JsonNode?)JsonValue.Create(c))]),
            };
        }

        return o;
    }

    /// <summary>The report as indented JSON text. Throws rather than write NaN or infinity.</summary>
    /// <returns>The JSON text.</returns>
    public string ToJson() => ToJsonObject().ToJsonString(JsonOptions);

    /// <summary>Writes one JSON line per prediction to <paramref name="path"/> (written to a temporary file, then renamed: never a partial file).</summary>
    /// <param name="path">The JSONL file to write.</param>
    public void WritePredictions(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        AtomicFile.WriteAllLines(path, PredictionLines());
    }

    private string[] PredictionLines() => Predictions.Select(pr => JsonSerializer.Serialize(pr, LineOptions)).ToArray();

    /// <summary>Writes <c>report.md</c>, <c>report.json</c> and <c>predictions.jsonl</c> into <paramref name="folder"/> (created when absent).</summary>
    /// <param name="folder">The destination folder.</param>
    public void Save(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        // Everything is rendered first (a NaN fails here, before any file is touched), then each file is replaced atomically.
        string markdown = ToMarkdown();
        string json = ToJson();
        string[] lines = PredictionLines();
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, "report.md"), markdown);
        AtomicFile.WriteAllText(Path.Combine(folder, "report.json"), json);
        AtomicFile.WriteAllLines(Path.Combine(folder, "predictions.jsonl"), lines);
    }

    /// <inheritdoc />
    public override string ToString() => ToMarkdown();

    internal static JsonSerializerOptions JsonOptions { get; } = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };

    private static JsonSerializerOptions LineOptions { get; } = new(JsonOptions) { WriteIndented = false };

    private static string Duration(TimeSpan t) => t.TotalHours >= 1
        ? t.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture)
        : string.Create(CultureInfo.InvariantCulture, $"{t.TotalSeconds:0.##} s");

    private static string Bytes(long? b) => b is long v ? string.Create(CultureInfo.InvariantCulture, $"{v / (1024.0 * 1024 * 1024):0.##} GiB") : "not measured";
}
