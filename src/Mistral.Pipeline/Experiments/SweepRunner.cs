using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mistral.Pipeline.Experiments;

/// <summary>
/// Runs a sweep: every run of <see cref="SweepRunner.Plan"/> (or this shard's share) trains and/or evaluates a clone of the
/// base pipeline and writes its own folder <c>runs/{name}/</c> under the results folder atomically (built in a hidden
/// staging sibling, renamed into place when complete). A run whose completed folder exists with the same id is skipped, so
/// a stopped sweep resumes where it stopped; a changed configuration or data gives new ids, so a stale result is never reused.
/// </summary>
/// <remarks>
/// A run's folder: <c>config.json</c> (resolved configuration + provenance), <c>run.json</c> (what the results table reads),
/// <c>report.json</c>/<c>report.md</c>/<c>predictions.jsonl</c> (the <see cref="EvaluationReport"/>), and for fine-tuned runs
/// <c>training_log.csv</c> (loss per optimizer step) and <c>adapter/</c> (PEFT format). The results folder also gets
/// <c>sweep.json</c>, the plan (every run's index, id and settings), which aggregation uses to order rows and count missing runs.
/// </remarks>
public sealed class SweepRunner
{
    /// <summary>The subfolder holding one folder per completed run.</summary>
    public const string RunsFolder = "runs";

    /// <summary>The plan file written at the results folder's root.</summary>
    public const string PlanFile = "sweep.json";

    private readonly ILogger _logger;

    /// <summary>Creates a runner.</summary>
    /// <param name="logger">Logs each run's start, skip and completion.</param>
    public SweepRunner(ILogger<SweepRunner>? logger = null)
    {
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Expands a sweep over a base pipeline into its runs, each resolved and with its id (nothing is loaded or run).</summary>
    /// <param name="sweep">The sweep.</param>
    /// <param name="basePipeline">The base configuration (model, task, adapter, training and evaluation settings); it is not changed.</param>
    /// <param name="data">The data.</param>
    /// <returns>The runs in sweep order (duplicates, e.g. zero-shot runs that ignore a training axis, appear once).</returns>
    /// <exception cref="InvalidOperationException">The base pipeline lacks a model, a task, or an adapter that the axes need.</exception>
    public static IReadOnlyList<SweepRunPlan> Plan(SweepDefinition sweep, MistralPipeline basePipeline, SweepData data) =>
        SweepPlanner.Plan(sweep, basePipeline, data);

    /// <summary><see cref="Run"/> on a worker thread.</summary>
    /// <param name="sweep">The sweep.</param>
    /// <param name="basePipeline">The base configuration.</param>
    /// <param name="data">The data.</param>
    /// <param name="resultsFolder">The results folder (created when absent; shared by all shards).</param>
    /// <param name="options">Shard and price; null for the whole sweep without a price.</param>
    /// <param name="progress">Told when a run is skipped, starts, advances and completes.</param>
    /// <param name="cancellationToken">Stops the sweep: the run in progress is abandoned (its staging folder removed) and <see cref="OperationCanceledException"/> is thrown; completed runs stay.</param>
    /// <returns>What ran and what was skipped.</returns>
    public Task<SweepRunSummary> RunAsync(SweepDefinition sweep, MistralPipeline basePipeline, SweepData data, string resultsFolder,
        SweepRunOptions? options = null, IProgress<SweepProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Factory.StartNew(() => Run(sweep, basePipeline, data, resultsFolder, options, progress, cancellationToken), cancellationToken,
            TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Runs this shard's runs of the sweep that are not complete yet, one after another.</summary>
    /// <param name="sweep">The sweep.</param>
    /// <param name="basePipeline">The base configuration.</param>
    /// <param name="data">The data.</param>
    /// <param name="resultsFolder">The results folder (created when absent; shared by all shards).</param>
    /// <param name="options">Shard and price; null for the whole sweep without a price.</param>
    /// <param name="progress">Told when a run is skipped, starts, advances and completes (on the working thread).</param>
    /// <param name="cancellationToken">Stops the sweep (throws <see cref="OperationCanceledException"/>); completed runs stay.</param>
    /// <returns>What ran and what was skipped.</returns>
    public SweepRunSummary Run(SweepDefinition sweep, MistralPipeline basePipeline, SweepData data, string resultsFolder,
        SweepRunOptions? options = null, IProgress<SweepProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        ArgumentNullException.ThrowIfNull(basePipeline);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentException.ThrowIfNullOrWhiteSpace(resultsFolder);
        options = (options ?? new SweepRunOptions()).Validate();
        cancellationToken.ThrowIfCancellationRequested();
        var plans = Plan(sweep, basePipeline, data);
        string runs = Path.Combine(resultsFolder, RunsFolder);
        Directory.CreateDirectory(runs);
        WritePlan(resultsFolder, sweep, basePipeline.Settings.Task!, plans);
        var mine = plans.Where(p => options.Shard.Includes(p.Index)).ToList();
        _logger.LogInformation("Sweep {Sweep}: {Total} runs, shard {Shard} takes {Mine}; results in {Folder}.", sweep.Name, plans.Count, options.Shard, mine.Count, resultsFolder);
        var executed = new List<SweepRunPlan>();
        var skipped = new List<SweepRunPlan>();
        for (int i = 0; i < mine.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var plan = mine[i];
            string final = Path.Combine(runs, plan.Name);
            if (IsComplete(final, plan.Id))
            {
                skipped.Add(plan);
                _logger.LogInformation("Run {Position}/{Count} {Name}: already complete, skipped.", i + 1, mine.Count, plan.Name);
                progress?.Report(new SweepProgress(SweepProgressKind.Skipped, plan, i + 1, mine.Count) { Completed = executed.Count, Skipped = skipped.Count, Folder = final });
                continue;
            }

            _logger.LogInformation("Run {Position}/{Count} {Name}: starting.", i + 1, mine.Count, plan.Name);
            var clock = Stopwatch.StartNew();
            progress?.Report(new SweepProgress(SweepProgressKind.Started, plan, i + 1, mine.Count) { Completed = executed.Count, Skipped = skipped.Count });
            int position = i + 1;
            var inner = new SyncProgress<PipelineProgress>(p => progress?.Report(
                new SweepProgress(SweepProgressKind.Working, plan, position, mine.Count) { Pipeline = p, Completed = executed.Count, Skipped = skipped.Count, Elapsed = clock.Elapsed }));
            RunOne(sweep, plan, data, runs, final, options, inner, cancellationToken);
            executed.Add(plan);
            _logger.LogInformation("Run {Position}/{Count} {Name}: complete in {Seconds:F1} s.", i + 1, mine.Count, plan.Name, clock.Elapsed.TotalSeconds);
            progress?.Report(new SweepProgress(SweepProgressKind.Completed, plan, i + 1, mine.Count)
            {
                Completed = executed.Count, Skipped = skipped.Count, Elapsed = clock.Elapsed, Folder = final,
            });
        }

        return new SweepRunSummary(resultsFolder, plans, options.Shard, executed, skipped);
    }

    /// <summary>Whether <paramref name="runFolder"/> holds a completed run with id <paramref name="id"/>.</summary>
    internal static bool IsComplete(string runFolder, string id)
    {
        string path = Path.Combine(runFolder, "run.json");
        if (!File.Exists(path))
        {
            return false;
        }

        try
        {
            var node = JsonNode.Parse(File.ReadAllText(path));
            return node?["id"]?.GetValue<string>() == id && node["status"]?.GetValue<string>() == "completed";
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            return false;
        }
    }

    private void RunOne(SweepDefinition sweep, SweepRunPlan plan, SweepData data, string runs, string final, SweepRunOptions options,
        IProgress<PipelineProgress> progress, CancellationToken cancellationToken)
    {
        RemoveStaging(runs, plan.Name);
        string stage = Path.Combine(runs, $".staging-{plan.Name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(stage);
        var started = DateTimeOffset.UtcNow;
        try
        {
            var pipeline = plan.Pipeline!.Clone();
            var evaluation = pipeline.Settings.Evaluation with { Cost = options.Cost };
            EvaluationReport report;
            TrainingSummary? training = null;
            if (plan.Mode.UsesAdapter)
            {
                if (pipeline.Settings.OutputFolder is not null)
                {
                    pipeline.WithOutputFolder(Path.Combine(stage, "checkpoints"));
                }

                using TrainedPipeline tuned = pipeline.Train(plan.Train, progress, cancellationToken);
                if (tuned.Cancelled)
                {
                    throw new OperationCanceledException($"Sweep run {plan.Name} was cancelled during training; a partial run is not kept.", cancellationToken);
                }

                report = tuned.Evaluate(data.Test, EvaluationMode.FineTuned(), evaluation, progress, cancellationToken);
                if (options.SaveAdapter)
                {
                    tuned.SaveAdapter(Path.Combine(stage, "adapter"), cancellationToken);
                }

                training = tuned.Training;
            }
            else
            {
                using LoadedPipeline loaded = pipeline.Build(progress, cancellationToken);
                var mode = plan.Mode.Kind == EvaluationModeKind.FewShot ? plan.Mode with { Pool = plan.Train } : plan.Mode;
                report = loaded.Evaluate(data.Test, mode, evaluation, progress, cancellationToken);
            }

            cancellationToken.ThrowIfCancellationRequested();
            progress.Report(new PipelineProgress(PipelineStage.Saving, 0, 1, $"writing {plan.Name}"));
            var finished = DateTimeOffset.UtcNow;
            // Everything is rendered before anything is written: a NaN fails here, naming what it is.
            string config = ConfigJson(sweep, plan, pipeline, data, started);
            string run = RunJson(sweep, plan, report, training, started, finished);
            string? log = training is null ? null : TrainingLog(training, plan.Name);
            report.Save(stage);
            AtomicFile.WriteAllText(Path.Combine(stage, "config.json"), config);
            if (log is not null)
            {
                AtomicFile.WriteAllText(Path.Combine(stage, "training_log.csv"), log);
            }

            // run.json marks the folder complete; it is written last.
            AtomicFile.WriteAllText(Path.Combine(stage, "run.json"), run);
            Publish(stage, final, plan.Id);
        }
        catch
        {
            TryDelete(stage);
            throw;
        }
    }

    private static void Publish(string stage, string final, string id)
    {
        try
        {
            if (Directory.Exists(final))
            {
                if (IsComplete(final, id))
                {
                    TryDelete(stage);
                    return;
                }

                // An incomplete or foreign folder under this run's name: set it aside, then put the new one in place.
                string stale = Path.Combine(Path.GetDirectoryName(final)!, $".stale-{Path.GetFileName(final)}-{Guid.NewGuid():N}");
                Directory.Move(final, stale);
                TryDelete(stale);
            }

            Directory.Move(stage, final);
        }
        catch (IOException) when (IsComplete(final, id))
        {
            // Another process completed the same run first.
            TryDelete(stage);
        }
    }

    private static void RemoveStaging(string runs, string name)
    {
        foreach (string dir in Directory.EnumerateDirectories(runs, $".staging-{name}-*"))
        {
            TryDelete(dir);
        }
    }

    private static void TryDelete(string dir)
    {
        try
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static void WritePlan(string folder, SweepDefinition sweep, PipelineTask task, IReadOnlyList<SweepRunPlan> plans)
    {
        var o = new JsonObject
        {
            ["format"] = SweepPlanner.Format,
            ["sweep"] = sweep.Name,
            ["layout"] = sweep.Layout.ToString(),
            ["task"] = task.Name,
            ["task_has_labels"] = task.HasLabels,
            ["runs"] = new JsonArray([.. plans.Select(p => (JsonNode?)PlanNode(p))]),
        };
        AtomicFile.WriteAllText(Path.Combine(folder, PlanFile), o.ToJsonString(CanonicalJson.Indented));
    }

    internal static JsonObject PlanNode(SweepRunPlan p) => new()
    {
        ["index"] = p.Index,
        ["id"] = p.Id,
        ["name"] = p.Name,
        ["mode"] = p.Mode.ToString(),
        ["mode_kind"] = p.Mode.Kind.ToString(),
        ["fraction"] = p.Fraction,
        ["training_samples"] = p.TrainingSamples,
        ["r"] = p.R,
        ["alpha"] = p.Alpha,
        ["dropout"] = p.Dropout,
        ["target_modules"] = p.TargetModules is null ? null : new JsonArray([.. p.TargetModules.Select(t => (JsonNode?)JsonValue.Create(t))]),
        ["epochs"] = p.Epochs,
        ["learning_rate"] = p.LearningRate,
    };

    private static string ConfigJson(SweepDefinition sweep, SweepRunPlan plan, MistralPipeline pipeline, SweepData data, DateTimeOffset started)
    {
        var o = new JsonObject
        {
            ["id"] = plan.Id,
            ["name"] = plan.Name,
            ["sweep"] = sweep.Name,
            ["resolved"] = JsonNode.Parse(plan.CanonicalConfiguration),
            ["provenance"] = new JsonObject
            {
                ["model_folder"] = Path.GetFullPath(pipeline.Settings.ModelFolder!),
                ["adapter_folder"] = pipeline.Settings.AdapterFolder is { } a ? Path.GetFullPath(a) : null,
                ["data"] = data.Provenance.DeepClone(),
                ["started_utc"] = started.ToString("O", CultureInfo.InvariantCulture),
                ["host"] = Environment.MachineName,
            },
        };
        return o.ToJsonString(CanonicalJson.Indented);
    }

    private static string RunJson(SweepDefinition sweep, SweepRunPlan plan, EvaluationReport report, TrainingSummary? training, DateTimeOffset started, DateTimeOffset finished)
    {
        var p = report.Pillars;
        var quality = new JsonObject();
        foreach (var (key, value) in report.Metrics.Headline)
        {
            quality[key] = Finite(value, $"quality '{key}'", plan.Name);
        }

        var o = PlanNode(plan);
        o["format"] = SweepPlanner.Format;
        o["status"] = "completed";
        o["sweep"] = sweep.Name;
        o["task"] = report.Task;
        o["started_utc"] = started.ToString("O", CultureInfo.InvariantCulture);
        o["finished_utc"] = finished.ToString("O", CultureInfo.InvariantCulture);
        o["wall_seconds"] = (finished - started).TotalSeconds;
        o["host"] = Environment.MachineName;
        o["device"] = p.Device;
        o["test_examples"] = report.Predictions.Count;
        o["quality"] = quality;
        o["pillars"] = new JsonObject
        {
            ["training_seconds"] = p.TrainingTime?.TotalSeconds,
            ["training_tokens_per_second"] = p.TrainingTokensPerSecond is double tps ? Finite(tps, "training tokens/s", plan.Name) : null,
            ["training_peak_memory_bytes"] = p.TrainingPeakMemoryBytes,
            ["inference_seconds"] = p.InferenceTime.TotalSeconds,
            ["examples_per_second"] = Finite(p.ExamplesPerSecond, "examples/s", plan.Name),
            ["generated_tokens_per_second"] = Finite(p.GeneratedTokensPerSecond, "generated tokens/s", plan.Name),
            ["latency_p50_ms"] = Finite(p.LatencyP50Milliseconds, "latency p50", plan.Name),
            ["latency_p95_ms"] = Finite(p.LatencyP95Milliseconds, "latency p95", plan.Name),
            ["inference_peak_memory_bytes"] = p.InferencePeakMemoryBytes,
            ["memory_kind"] = p.MemoryKind,
        };
        o["training"] = training is null ? null : new JsonObject
        {
            ["steps"] = training.StepsCompleted,
            ["total_steps"] = training.TotalSteps,
            ["tokens"] = training.Tokens,
            ["examples"] = training.Examples,
            ["data"] = training.Data,
            ["final_epoch_loss"] = training.EpochLosses.Count > 0 ? Finite(training.EpochLosses[^1], "final epoch loss", plan.Name) : null,
        };
        return o.ToJsonString(CanonicalJson.Indented);
    }

    internal static string TrainingLog(TrainingSummary training, string run)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder("step,epoch,micro_batches,loss,grad_norm,tokens,target_tokens,seconds\n");
        foreach (var s in training.Steps)
        {
            Finite(s.Loss, $"loss of step {s.Step}", run);
            Finite(s.GradNorm, $"gradient norm of step {s.Step}", run);
            sb.Append(ci, $"{s.Step},{s.Epoch},{s.MicroBatches},{s.Loss:R},{s.GradNorm:R},{s.Tokens},{s.TargetTokens},{s.Elapsed.TotalSeconds:R}\n");
        }

        return sb.ToString();
    }

    private static double Finite(double value, string what, string run) => double.IsFinite(value)
        ? value
        : throw new InvalidDataException($"Sweep run {run}: the {what} is {value.ToString(CultureInfo.InvariantCulture)}; a result with a non-finite value is not written.");
}
