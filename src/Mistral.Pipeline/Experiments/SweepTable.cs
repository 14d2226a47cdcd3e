using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Mistral.Pipeline.Experiments;

/// <summary>What a results-table column holds.</summary>
public enum SweepColumnKind
{
    /// <summary>A setting of the run (fraction, samples, method, r…).</summary>
    Setting,

    /// <summary>A quality metric (accuracy, macro F1, ROUGE…): deterministic for a given configuration.</summary>
    Quality,

    /// <summary>A measurement of time, memory or cost (time to train, tokens/s, latency…): differs between machines and runs.</summary>
    Measurement,
}

/// <summary>A column of a <see cref="SweepTable"/>.</summary>
/// <param name="Key">Machine name (CSV header, JSON key), e.g. <c>macro_f1</c>, <c>training_seconds</c>.</param>
/// <param name="Header">Human header (Markdown), e.g. "macro F1", "time to train".</param>
/// <param name="Kind">Setting, quality or measurement.</param>
public sealed record SweepTableColumn(string Key, string Header, SweepColumnKind Kind);

/// <summary>A row of a <see cref="SweepTable"/>: one completed run.</summary>
/// <param name="RunId">The run's id.</param>
/// <param name="RunName">The run's folder name.</param>
/// <param name="Values">Per column key: a string, an int/long, a double or a decimal; null where it does not apply (e.g. time to train of a zero-shot run).</param>
public sealed record SweepTableRow(string RunId, string RunName, IReadOnlyDictionary<string, object?> Values);

/// <summary>
/// One results table per sweep, laid out like the study's tables — Table 1 (fraction → samples → accuracy / macro-F1, with
/// label-likelihood accuracy) or Table 2 (method → ROUGE-1/2/L/Lsum) — with the settings that vary across the sweep and
/// the four pillars on every row: time to train, training tokens/s, peak memory (training and inference), cost to train and
/// inference cost per 1,000 examples at the given hourly price, and inference latency p50/p95. Renders as Markdown, CSV and JSON.
/// </summary>
public sealed class SweepTable
{
    private static readonly string[] ClassificationQuality = ["accuracy", "macro_f1", "micro_f1", "likelihood_accuracy", "likelihood_macro_f1", "unparseable"];
    private static readonly string[] SummarizationQuality = ["rouge1", "rouge2", "rougeL", "rougeLsum"];

    private SweepTable(SweepResults results, SweepTableLayout layout, CostModel? cost, IReadOnlyList<SweepTableColumn> columns, IReadOnlyList<SweepTableRow> rows)
    {
        Results = results;
        Layout = layout;
        Cost = cost;
        Columns = columns;
        Rows = rows;
    }

    /// <summary>The results the table was made from.</summary>
    public SweepResults Results { get; }

    /// <summary>The layout used.</summary>
    public SweepTableLayout Layout { get; }

    /// <summary>The price used for the cost columns (null: no cost figures).</summary>
    public CostModel? Cost { get; }

    /// <summary>The columns, in order.</summary>
    public IReadOnlyList<SweepTableColumn> Columns { get; }

    /// <summary>One row per completed run, in plan order.</summary>
    public IReadOnlyList<SweepTableRow> Rows { get; }

    /// <summary>Builds the table of a results folder's completed runs.</summary>
    /// <param name="results">The results (<see cref="SweepResults.Load"/>).</param>
    /// <param name="cost">The hourly price for the cost columns; null leaves them empty.</param>
    /// <param name="layout">The layout; <see cref="SweepTableLayout.Auto"/> takes the sweep's.</param>
    /// <returns>The table.</returns>
    public static SweepTable From(SweepResults results, CostModel? cost = null, SweepTableLayout layout = SweepTableLayout.Auto)
    {
        ArgumentNullException.ThrowIfNull(results);
        cost?.Validate();
        if (!Enum.IsDefined(layout))
        {
            throw new ArgumentException($"SweepTable layout {layout} is not a SweepTableLayout value.", nameof(layout));
        }

        layout = layout == SweepTableLayout.Auto ? results.EffectiveLayout : layout;
        var runs = results.Runs;
        var columns = new List<SweepTableColumn>();
        var getters = new Dictionary<string, Func<CompletedRun, object?>>(StringComparer.Ordinal);

        void Add(string key, string header, SweepColumnKind kind, Func<CompletedRun, object?> get)
        {
            columns.Add(new SweepTableColumn(key, header, kind));
            getters[key] = get;
        }

        bool Varies<T>(Func<CompletedRun, T> f) => runs.Select(f).Distinct().Count() > 1;

        if (layout == SweepTableLayout.SampleEfficiency)
        {
            Add("fraction", "training fraction", SweepColumnKind.Setting, r => r.Fraction ?? 1.0);
            Add("samples", "training samples", SweepColumnKind.Setting, r => r.TrainingSamples);
            if (Varies(r => r.Mode))
            {
                Add("method", "method", SweepColumnKind.Setting, r => r.Mode);
            }
        }
        else
        {
            Add("method", "method", SweepColumnKind.Setting, r => r.Mode);
            if (Varies(r => r.Fraction))
            {
                Add("fraction", "training fraction", SweepColumnKind.Setting, r => r.Fraction);
            }

            if (Varies(r => r.TrainingSamples) || runs.Any(r => r.TrainingSamples > 0))
            {
                Add("samples", "training samples", SweepColumnKind.Setting, r => r.TrainingSamples);
            }
        }

        if (Varies(r => r.Epochs))
        {
            Add("epochs", "epochs", SweepColumnKind.Setting, r => r.Epochs);
        }

        if (Varies(r => r.LearningRate))
        {
            Add("learning_rate", "learning rate", SweepColumnKind.Setting, r => r.LearningRate);
        }

        if (Varies(r => r.R))
        {
            Add("r", "r", SweepColumnKind.Setting, r => r.R);
        }

        if (Varies(r => r.Alpha))
        {
            Add("alpha", "alpha", SweepColumnKind.Setting, r => r.Alpha);
        }

        if (Varies(r => r.Dropout))
        {
            Add("dropout", "dropout", SweepColumnKind.Setting, r => r.Dropout);
        }

        if (Varies(r => r.TargetModules is null ? null : string.Join("+", r.TargetModules)))
        {
            Add("target_modules", "targets", SweepColumnKind.Setting, r => r.TargetModules is null ? null : string.Join("+", r.TargetModules));
        }

        var present = runs.SelectMany(r => r.Quality.Keys).Distinct(StringComparer.Ordinal).ToList();
        var ordered = ClassificationQuality.Concat(SummarizationQuality).Where(present.Contains)
            .Concat(present.Where(k => !ClassificationQuality.Contains(k) && !SummarizationQuality.Contains(k)).Order(StringComparer.Ordinal));
        foreach (string q in ordered)
        {
            Add(q, QualityHeader(q), SweepColumnKind.Quality, r => r.Quality.TryGetValue(q, out double v) ? (q == "unparseable" ? (object)(int)v : v) : null);
        }

        Add("training_seconds", "time to train", SweepColumnKind.Measurement, r => r.TrainingSeconds);
        Add("training_tokens_per_second", "training tokens/s", SweepColumnKind.Measurement, r => r.TrainingTokensPerSecond);
        Add("training_peak_memory_bytes", "peak memory (train)", SweepColumnKind.Measurement, r => r.TrainingPeakMemoryBytes);
        Add("inference_peak_memory_bytes", "peak memory (inference)", SweepColumnKind.Measurement, r => r.InferencePeakMemoryBytes);
        Add("training_cost", "cost to train", SweepColumnKind.Measurement, r => cost is null || r.TrainingSeconds is not double t ? null : Round(cost.CostOf(TimeSpan.FromSeconds(t))));
        Add("inference_cost_per_1000", "inference cost per 1,000", SweepColumnKind.Measurement,
            r => cost is null || r.TestExamples == 0 ? null : Round(cost.CostOf(TimeSpan.FromSeconds(r.InferenceSeconds / r.TestExamples * 1000))));
        Add("latency_p50_ms", "latency p50", SweepColumnKind.Measurement, r => r.LatencyP50Milliseconds);
        Add("latency_p95_ms", "latency p95", SweepColumnKind.Measurement, r => r.LatencyP95Milliseconds);
        Add("examples_per_second", "examples/s", SweepColumnKind.Measurement, r => r.ExamplesPerSecond);
        var rows = runs.Select(r => new SweepTableRow(r.Id, r.Name,
            columns.ToDictionary(c => c.Key, c => getters[c.Key](r), StringComparer.Ordinal))).ToArray();
        return new SweepTable(results, layout, cost, columns, rows);
    }

    /// <summary>The table as Markdown: a title line, the table, and a note on what is missing and how memory was measured.</summary>
    /// <returns>The Markdown text.</returns>
    public string ToMarkdown()
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        string title = Layout == SweepTableLayout.SampleEfficiency ? "sample efficiency" : "methods";
        sb.Append(ci, $"### {Results.Name ?? Path.GetFileName(Path.GetFullPath(Results.Folder))}: {title}, {Rows.Count} run{(Rows.Count == 1 ? string.Empty : "s")}");
        if (Results.PlannedRuns > 0)
        {
            sb.Append(ci, $" of {Results.PlannedRuns} planned");
        }

        sb.Append("\n\n| ").Append(string.Join(" | ", Columns.Select(c => c.Header))).Append(" | run |\n|");
        sb.Append(string.Concat(Columns.Select(c => c.Kind == SweepColumnKind.Setting && c.Key is "method" or "target_modules" ? "---|" : "---:|"))).Append("---|\n");
        foreach (var row in Rows)
        {
            sb.Append("| ").Append(string.Join(" | ", Columns.Select(c => FormatCell(c, row.Values[c.Key])))).Append(ci, $" | `{row.RunName}` |\n");
        }

        sb.Append('\n');
        var memory = Results.Runs.Select(r => $"{r.MemoryKind} on {r.Device}").Distinct().ToArray();
        if (memory.Length > 0)
        {
            sb.Append(ci, $"Memory: {string.Join("; ", memory)}. ");
        }

        sb.Append(Cost is null ? "No price given: cost columns are empty. " : string.Create(ci, $"Costs at {Cost.PricePerHour} {Cost.Currency}/hour. "));
        if (Results.MissingRuns.Count > 0)
        {
            sb.Append(ci, $"Not finished yet: {Results.MissingRuns.Count} run{(Results.MissingRuns.Count == 1 ? string.Empty : "s")}. ");
        }

        if (Results.RunsNotInPlan.Count > 0)
        {
            sb.Append(ci, $"{Results.RunsNotInPlan.Count} completed run folder(s) from an earlier configuration are not shown. ");
        }

        return sb.ToString().TrimEnd() + "\n";
    }

    /// <summary>The table as CSV (RFC 4180, invariant culture, raw numbers: seconds, bytes, milliseconds), with a final <c>run_id</c> column.</summary>
    /// <returns>The CSV text.</returns>
    public string ToCsv()
    {
        var sb = new StringBuilder();
        sb.Append(string.Join(",", Columns.Select(c => Csv(c.Key)))).Append(",run_name,run_id\n");
        foreach (var row in Rows)
        {
            sb.Append(string.Join(",", Columns.Select(c => Csv(Raw(row.Values[c.Key]))))).Append(',').Append(Csv(row.RunName)).Append(',').Append(row.RunId).Append('\n');
        }

        return sb.ToString();
    }

    /// <summary>The table as JSON: the sweep, price, columns and one object per row (raw numbers; null where a value does not apply).</summary>
    /// <returns>The JSON object.</returns>
    public JsonObject ToJsonObject() => new()
    {
        ["sweep"] = Results.Name,
        ["layout"] = Layout.ToString(),
        ["price_per_hour"] = Cost?.PricePerHour,
        ["currency"] = Cost?.Currency,
        ["runs_planned"] = Results.PlannedRuns,
        ["runs_completed"] = Rows.Count,
        ["missing_runs"] = new JsonArray([.. Results.MissingRuns.Select(m => (JsonNode?)JsonValue.Create(m))]),
        ["columns"] = new JsonArray([.. Columns.Select(c => (JsonNode?)new JsonObject { ["key"] = c.Key, ["header"] = c.Header, ["kind"] = c.Kind.ToString() })]),
        ["rows"] = new JsonArray([.. Rows.Select(r =>
        {
            var o = new JsonObject();
            foreach (var c in Columns)
            {
                o[c.Key] = Node(r.Values[c.Key]);
            }

            o["run_name"] = r.RunName;
            o["run_id"] = r.RunId;
            return (JsonNode?)o;
        })]),
    };

    /// <summary>The table as indented JSON text.</summary>
    /// <returns>The JSON text.</returns>
    public string ToJson() => ToJsonObject().ToJsonString(CanonicalJson.Indented);

    /// <summary>Writes <c>{name}.md</c>, <c>{name}.csv</c> and <c>{name}.json</c> into <paramref name="folder"/>, each atomically (rendered first).</summary>
    /// <param name="folder">The destination (created when absent).</param>
    /// <param name="name">The file name without extension.</param>
    /// <returns>The three paths.</returns>
    public IReadOnlyList<string> Save(string folder, string name = "table")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        string md = ToMarkdown(), csv = ToCsv(), json = ToJson();
        var paths = new[] { Path.Combine(folder, name + ".md"), Path.Combine(folder, name + ".csv"), Path.Combine(folder, name + ".json") };
        AtomicFile.WriteAllText(paths[0], md);
        AtomicFile.WriteAllText(paths[1], csv);
        AtomicFile.WriteAllText(paths[2], json);
        return paths;
    }

    /// <inheritdoc />
    public override string ToString() => ToMarkdown();

    private static decimal Round(decimal v) => Math.Round(v, 6);

    private static string QualityHeader(string key) => key switch
    {
        "accuracy" => "accuracy",
        "macro_f1" => "macro F1",
        "micro_f1" => "micro F1",
        "likelihood_accuracy" => "likelihood accuracy",
        "likelihood_macro_f1" => "likelihood macro F1",
        "unparseable" => "unparseable",
        "rouge1" => "ROUGE-1",
        "rouge2" => "ROUGE-2",
        "rougeL" => "ROUGE-L",
        "rougeLsum" => "ROUGE-Lsum",
        _ => key,
    };

    private string FormatCell(SweepTableColumn c, object? v)
    {
        var ci = CultureInfo.InvariantCulture;
        if (v is null)
        {
            return "—";
        }

        return c.Key switch
        {
            "fraction" => string.Create(ci, $"{(double)v * 100:0.##} %"),
            "training_seconds" => Duration((double)v),
            "training_tokens_per_second" => ((double)v).ToString("N0", ci),
            "training_peak_memory_bytes" or "inference_peak_memory_bytes" => string.Create(ci, $"{(long)v / (1024.0 * 1024 * 1024):0.##} GiB"),
            "training_cost" or "inference_cost_per_1000" => string.Create(ci, $"{(decimal)v:0.####} {Cost?.Currency}"),
            "latency_p50_ms" or "latency_p95_ms" => string.Create(ci, $"{(double)v:0.#} ms"),
            "examples_per_second" => ((double)v).ToString("0.##", ci),
            "learning_rate" => ((double)v).ToString("0.######", ci),
            _ when c.Key.StartsWith("rouge", StringComparison.Ordinal) => ((double)v).ToString("0.00", ci),
            _ when c.Kind == SweepColumnKind.Quality && v is double d => d.ToString("0.0000", ci),
            _ => Raw(v),
        };
    }

    private static string Duration(double seconds) => seconds >= 3600
        ? TimeSpan.FromSeconds(seconds).ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture)
        : string.Create(CultureInfo.InvariantCulture, $"{seconds:0.#} s");

    private static string Raw(object? v) => v switch
    {
        null => string.Empty,
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        decimal m => m.ToString(CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => v.ToString() ?? string.Empty,
    };

    private static string Csv(string s) => s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : s;

    private static JsonNode? Node(object? v) => v switch
    {
        null => null,
        string s => JsonValue.Create(s),
        int i => JsonValue.Create(i),
        long l => JsonValue.Create(l),
        double d => JsonValue.Create(d),
        decimal m => JsonValue.Create(m),
        _ => JsonValue.Create(v.ToString()),
    };
}
