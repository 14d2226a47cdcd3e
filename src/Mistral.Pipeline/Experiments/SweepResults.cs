using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mistral.Pipeline.Experiments;

/// <summary>One completed run as its folder describes it (<c>run.json</c>).</summary>
public sealed record CompletedRun
{
    /// <summary>The run's id (SHA-256 of its canonical configuration).</summary>
    public required string Id { get; init; }

    /// <summary>The run's folder name.</summary>
    public required string Name { get; init; }

    /// <summary>The run's folder.</summary>
    public required string Folder { get; init; }

    /// <summary>Its index in the sweep's plan.</summary>
    public required int Index { get; init; }

    /// <summary>The evaluation mode, e.g. "fine-tuned", "few-shot (k=2, FirstK)".</summary>
    public required string Mode { get; init; }

    /// <summary>The evaluation mode's kind.</summary>
    public required EvaluationModeKind ModeKind { get; init; }

    /// <summary>The training fraction (null: the whole set, or zero-shot).</summary>
    public double? Fraction { get; init; }

    /// <summary>Training examples used.</summary>
    public required int TrainingSamples { get; init; }

    /// <summary>LoRA rank (fine-tuned runs).</summary>
    public int? R { get; init; }

    /// <summary>LoRA alpha (fine-tuned runs).</summary>
    public double? Alpha { get; init; }

    /// <summary>LoRA dropout (fine-tuned runs).</summary>
    public double? Dropout { get; init; }

    /// <summary>LoRA targets (fine-tuned runs).</summary>
    public IReadOnlyList<string>? TargetModules { get; init; }

    /// <summary>Epochs (fine-tuned runs).</summary>
    public int? Epochs { get; init; }

    /// <summary>Learning rate (fine-tuned runs).</summary>
    public double? LearningRate { get; init; }

    /// <summary>Test examples evaluated.</summary>
    public required int TestExamples { get; init; }

    /// <summary>The task's headline metrics (accuracy, macro_f1, likelihood_accuracy…; rouge1…).</summary>
    public required IReadOnlyDictionary<string, double> Quality { get; init; }

    /// <summary>Wall time of training, seconds (null for zero/few-shot).</summary>
    public double? TrainingSeconds { get; init; }

    /// <summary>Training tokens per second.</summary>
    public double? TrainingTokensPerSecond { get; init; }

    /// <summary>Peak memory while training (see <see cref="MemoryKind"/>).</summary>
    public long? TrainingPeakMemoryBytes { get; init; }

    /// <summary>Wall time of the whole evaluation, seconds.</summary>
    public required double InferenceSeconds { get; init; }

    /// <summary>Examples per second over the evaluation.</summary>
    public required double ExamplesPerSecond { get; init; }

    /// <summary>Median latency of one example, ms.</summary>
    public required double LatencyP50Milliseconds { get; init; }

    /// <summary>95th-percentile latency of one example, ms.</summary>
    public required double LatencyP95Milliseconds { get; init; }

    /// <summary>Peak memory while evaluating.</summary>
    public long? InferencePeakMemoryBytes { get; init; }

    /// <summary>What the memory figures measure.</summary>
    public required string MemoryKind { get; init; }

    /// <summary>The device, e.g. "cpu", "cuda:0".</summary>
    public required string Device { get; init; }

    /// <summary>When the run started.</summary>
    public required DateTimeOffset StartedUtc { get; init; }

    /// <summary>When the run finished.</summary>
    public required DateTimeOffset FinishedUtc { get; init; }

    /// <summary>A short description of the run's method: the mode plus its swept settings.</summary>
    public string Method => ModeKind == EvaluationModeKind.FineTuned
        ? string.Create(CultureInfo.InvariantCulture, $"QLoRA r={R} α={Alpha:0.###} dropout={Dropout:0.###} epochs={Epochs}")
        : Mode;

    /// <summary>Reads the loss of every optimizer step from <c>training_log.csv</c> (empty for runs that did not train).</summary>
    /// <returns>(step, loss) pairs in step order.</returns>
    /// <exception cref="InvalidDataException">The file is malformed (the message names the line).</exception>
    public IReadOnlyList<(int Step, double Loss)> ReadTrainingLoss()
    {
        string path = Path.Combine(Folder, "training_log.csv");
        if (!File.Exists(path))
        {
            return [];
        }

        var lines = File.ReadAllLines(path);
        var header = lines.Length > 0 ? lines[0].Split(',') : [];
        int step = Array.IndexOf(header, "step"), loss = Array.IndexOf(header, "loss");
        if (step < 0 || loss < 0)
        {
            throw new InvalidDataException($"{path}: the header lacks 'step' or 'loss'.");
        }

        var list = new List<(int, double)>();
        for (int i = 1; i < lines.Length; i++)
        {
            if (lines[i].Length == 0)
            {
                continue;
            }

            var f = lines[i].Split(',');
            if (f.Length != header.Length
                || !int.TryParse(f[step], NumberStyles.Integer, CultureInfo.InvariantCulture, out int s)
                || !double.TryParse(f[loss], NumberStyles.Float, CultureInfo.InvariantCulture, out double l))
            {
                throw new InvalidDataException($"{path}({i + 1}): expected {header.Length} fields with an integer step and a number loss.");
            }

            list.Add((s, l));
        }

        return list;
    }

    /// <summary>Reads the confusion matrix of a classification run from <c>report.json</c>.</summary>
    /// <param name="likelihood">The label-likelihood predictions' matrix instead of the generated ones'.</param>
    /// <returns>The labels (row = gold, column = predicted, in this order) and the counts; null when the run has none.</returns>
    public (IReadOnlyList<string> Labels, int[][] Counts)? ReadConfusionMatrix(bool likelihood = false)
    {
        string path = Path.Combine(Folder, "report.json");
        if (!File.Exists(path))
        {
            return null;
        }

        var report = JsonNode.Parse(File.ReadAllText(path))?["metrics"]?[likelihood ? "likelihood" : "generated"];
        if (report?["confusion_matrix"] is not JsonArray rows || report["confusion_labels"] is not JsonArray labels)
        {
            return null;
        }

        return (labels.Select(l => l!.GetValue<string>()).ToArray(),
            rows.Select(r => r!.AsArray().Select(c => c!.GetValue<int>()).ToArray()).ToArray());
    }
}

/// <summary>
/// What a results folder holds: every completed run (<c>runs/*/run.json</c>) — whatever has finished, from any shard —
/// in the order of the sweep's plan (<c>sweep.json</c>), and which planned runs are still missing.
/// </summary>
public sealed class SweepResults
{
    private SweepResults(string folder, string? name, SweepTableLayout layout, bool? hasLabels, IReadOnlyList<CompletedRun> runs,
        int planned, IReadOnlyList<string> missing, IReadOnlyList<string> notInPlan)
    {
        Folder = folder;
        Name = name;
        Layout = layout;
        TaskHasLabels = hasLabels;
        Runs = runs;
        PlannedRuns = planned;
        MissingRuns = missing;
        RunsNotInPlan = notInPlan;
    }

    /// <summary>The results folder.</summary>
    public string Folder { get; }

    /// <summary>The sweep's name (null without <c>sweep.json</c>).</summary>
    public string? Name { get; }

    /// <summary>The table layout the sweep asked for (<see cref="SweepTableLayout.Auto"/> without <c>sweep.json</c>).</summary>
    public SweepTableLayout Layout { get; }

    /// <summary>Whether the task has labels (null when unknown).</summary>
    public bool? TaskHasLabels { get; }

    /// <summary>The completed runs of the plan, in plan order (every completed run when there is no plan).</summary>
    public IReadOnlyList<CompletedRun> Runs { get; }

    /// <summary>Runs in the plan (0 without <c>sweep.json</c>).</summary>
    public int PlannedRuns { get; }

    /// <summary>Names of planned runs not completed yet.</summary>
    public IReadOnlyList<string> MissingRuns { get; }

    /// <summary>Completed run folders whose id is not in the current plan (an earlier configuration); not in <see cref="Runs"/>.</summary>
    public IReadOnlyList<string> RunsNotInPlan { get; }

    /// <summary>Reads a results folder.</summary>
    /// <param name="folder">The folder a <see cref="SweepRunner"/> wrote (holding <c>runs/</c>).</param>
    /// <returns>The results.</returns>
    /// <exception cref="DirectoryNotFoundException">The folder or its <c>runs/</c> does not exist.</exception>
    /// <exception cref="InvalidDataException">A <c>run.json</c> or <c>sweep.json</c> is malformed (the message names the file).</exception>
    public static SweepResults Load(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        string runsDir = Path.Combine(folder, SweepRunner.RunsFolder);
        if (!Directory.Exists(runsDir))
        {
            throw new DirectoryNotFoundException($"{folder}: no '{SweepRunner.RunsFolder}' folder; is this a sweep's results folder?");
        }

        var completed = new List<CompletedRun>();
        foreach (string dir in Directory.EnumerateDirectories(runsDir).Order(StringComparer.Ordinal))
        {
            if (Path.GetFileName(dir).StartsWith('.'))
            {
                continue; // staging or stale folders: never results
            }

            string runJson = Path.Combine(dir, "run.json");
            if (File.Exists(runJson))
            {
                completed.Add(ReadRun(runJson, dir));
            }
        }

        string? name = null;
        var layout = SweepTableLayout.Auto;
        bool? hasLabels = null;
        int planned = 0;
        var missing = new List<string>();
        var notInPlan = new List<string>();
        IReadOnlyList<CompletedRun> runs = completed.OrderBy(r => r.Index).ThenBy(r => r.Name, StringComparer.Ordinal).ToArray();
        string planPath = Path.Combine(folder, SweepRunner.PlanFile);
        if (File.Exists(planPath))
        {
            try
            {
                var plan = JsonNode.Parse(File.ReadAllText(planPath));
                name = Req(plan, "sweep").GetValue<string>();
                layout = Enum.Parse<SweepTableLayout>(Req(plan, "layout").GetValue<string>());
                hasLabels = plan?["task_has_labels"]?.GetValue<bool>();
                var entries = Req(plan, "runs").AsArray().Select(r => (Id: Req(r, "id").GetValue<string>(), Name: Req(r, "name").GetValue<string>())).ToArray();
                planned = entries.Length;
                var byId = completed.GroupBy(r => r.Id).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
                var ordered = new List<CompletedRun>();
                foreach (var (id, runName) in entries)
                {
                    if (byId.TryGetValue(id, out var run))
                    {
                        ordered.Add(run);
                    }
                    else
                    {
                        missing.Add(runName);
                    }
                }

                var ids = entries.Select(e => e.Id).ToHashSet(StringComparer.Ordinal);
                notInPlan.AddRange(completed.Where(r => !ids.Contains(r.Id)).Select(r => r.Name));
                runs = ordered;
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or FormatException or InvalidDataException)
            {
                throw new InvalidDataException($"{planPath}: not a sweep plan ({e.Message}).", e);
            }
        }

        return new SweepResults(folder, name, layout, hasLabels, runs, planned, missing, notInPlan);
    }

    /// <summary>The layout a table of these results takes (<see cref="Layout"/>, with <see cref="SweepTableLayout.Auto"/> resolved).</summary>
    public SweepTableLayout EffectiveLayout =>
        Layout != SweepTableLayout.Auto ? Layout
        : (TaskHasLabels ?? Runs.Any(r => r.Quality.ContainsKey("accuracy") || r.Quality.ContainsKey("likelihood_accuracy")))
          && Runs.Select(r => r.Fraction).Distinct().Count() > 1 ? SweepTableLayout.SampleEfficiency
        : SweepTableLayout.Methods;

    private static JsonNode Req(JsonNode? node, string key) => node?[key] ?? throw new InvalidDataException($"'{key}' is missing");

    private static CompletedRun ReadRun(string path, string dir)
    {
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path)) ?? throw new InvalidDataException("the file holds null");
            var p = Req(o, "pillars").AsObject();
            return new CompletedRun
            {
                Id = Req(o, "id").GetValue<string>(),
                Name = Req(o, "name").GetValue<string>(),
                Folder = dir,
                Index = Req(o, "index").GetValue<int>(),
                Mode = Req(o, "mode").GetValue<string>(),
                ModeKind = Enum.Parse<EvaluationModeKind>(Req(o, "mode_kind").GetValue<string>()),
                Fraction = o["fraction"]?.GetValue<double>(),
                TrainingSamples = Req(o, "training_samples").GetValue<int>(),
                R = o["r"]?.GetValue<int>(),
                Alpha = o["alpha"]?.GetValue<double>(),
                Dropout = o["dropout"]?.GetValue<double>(),
                TargetModules = o["target_modules"]?.AsArray().Select(t => t!.GetValue<string>()).ToArray(),
                Epochs = o["epochs"]?.GetValue<int>(),
                LearningRate = o["learning_rate"]?.GetValue<double>(),
                TestExamples = Req(o, "test_examples").GetValue<int>(),
                Quality = Req(o, "quality").AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<double>(), StringComparer.Ordinal),
                TrainingSeconds = p["training_seconds"]?.GetValue<double>(),
                TrainingTokensPerSecond = p["training_tokens_per_second"]?.GetValue<double>(),
                TrainingPeakMemoryBytes = p["training_peak_memory_bytes"]?.GetValue<long>(),
                InferenceSeconds = Req(p, "inference_seconds").GetValue<double>(),
                ExamplesPerSecond = Req(p, "examples_per_second").GetValue<double>(),
                LatencyP50Milliseconds = Req(p, "latency_p50_ms").GetValue<double>(),
                LatencyP95Milliseconds = Req(p, "latency_p95_ms").GetValue<double>(),
                InferencePeakMemoryBytes = p["inference_peak_memory_bytes"]?.GetValue<long>(),
                MemoryKind = Req(p, "memory_kind").GetValue<string>(),
                Device = Req(o, "device").GetValue<string>(),
                StartedUtc = DateTimeOffset.Parse(Req(o, "started_utc").GetValue<string>(), CultureInfo.InvariantCulture),
                FinishedUtc = DateTimeOffset.Parse(Req(o, "finished_utc").GetValue<string>(), CultureInfo.InvariantCulture),
            };
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or FormatException or InvalidDataException)
        {
            throw new InvalidDataException($"{path}: not a completed run's run.json ({e.Message}).", e);
        }
    }
}
