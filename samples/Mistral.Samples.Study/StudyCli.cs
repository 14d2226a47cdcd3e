using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Mistral.Eval.Data;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Mistral.Pipeline;
using Mistral.Pipeline.Experiments;

namespace Mistral.Samples.Study;

/// <summary>
/// The study's scripts as verbs: <c>classify</c> / <c>summarize</c> (<c>mistral_classification.py</c>,
/// <c>mistral_summarization.py</c>: train + evaluate), <c>baseline</c> (<c>baseline_inference.sh</c>: zero- and few-shot),
/// <c>infer</c> (the <c>*_inference.py</c>: a trained adapter → predictions + metrics), <c>sweep</c> (<c>sample_ablate.sh</c>,
/// <c>run_lora.sh</c>, or axes; <c>--shard i/n</c>) and <c>report</c> (tables and plots of a results folder). With no verb it
/// runs the study end to end on the embedded kit.
/// </summary>
public static class StudyCli
{
    /// <summary>Parses and runs a command line.</summary>
    /// <param name="args">The arguments.</param>
    /// <param name="output">Where results and progress go; null for the console (live progress when it is a terminal).</param>
    /// <param name="error">Where errors go; null for the console's error stream.</param>
    /// <param name="cancellationToken">Stops the work (completed sweep runs are kept).</param>
    /// <returns>0 on success, 1 on a failure, 2 on a usage error or missing input, 130 when cancelled.</returns>
    public static Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null, CancellationToken cancellationToken = default) =>
        RunAsync(args, output, error, hub: null, cancellationToken);

    /// <summary>Parses and runs a command line, reaching the Hub (for Hub ids and HF URIs) as <paramref name="hub"/> says.</summary>
    /// <param name="args">The arguments.</param>
    /// <param name="output">Where results and progress go; null for the console.</param>
    /// <param name="error">Where errors go; null for the console's error stream.</param>
    /// <param name="hub">The Hub client options; null reads HF_ENDPOINT, HF_HUB_CACHE, HF_TOKEN, … from the environment.</param>
    /// <param name="cancellationToken">Stops the work.</param>
    /// <returns>As <see cref="RunAsync(string[], TextWriter?, TextWriter?, CancellationToken)"/>.</returns>
    internal static Task<int> RunAsync(string[] args, TextWriter? output, TextWriter? error, Mistral.Hub.HubClientOptions? hub, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        var console = new StudyConsole(output ?? Console.Out, live: output is null && !Console.IsOutputRedirected && Spectre.Console.AnsiConsole.Profile.Capabilities.Interactive);
        var err = error ?? Console.Error;
        var root = Build(console, err, hub);
        var configuration = new InvocationConfiguration { Output = console.Output, Error = err };
        return root.Parse(args).InvokeAsync(configuration, cancellationToken);
    }

    private static RootCommand Build(StudyConsole console, TextWriter err, Mistral.Hub.HubClientOptions? hub)
    {
        var root = new RootCommand("Mistral.NET: the QLoRA fine-tuning study as one command line. With no verb: the study end to end on the embedded kit (kit/model, kit/data).");
        var rootOptions = new Options(defaultOut: "results", includeAxes: false, includeData: false) { Hub = hub };
        rootOptions.AddTo(root);
        root.SetAction((pr, ct) => Guard(err, () => StudyAsync(pr, rootOptions, console, ct)));

        root.Add(TrainVerb("classify", StudyTask.Classification, "Fine-tune (QLoRA) and evaluate classification (mistral_classification.py).", console, err, hub));
        root.Add(TrainVerb("summarize", StudyTask.Summarization, "Fine-tune (QLoRA) and evaluate summarization (mistral_summarization.py).", console, err, hub));

        var baseline = new Command("baseline", "Zero- and few-shot prompting of the base model over both tasks (baseline_inference.sh).");
        var baselineOptions = new Options(defaultOut: "results/baseline", includeAxes: false, includeData: true) { Hub = hub };
        var task = TaskOption("both");
        var shots = new Option<int?>("--shots") { Description = "Few-shot examples per prompt (default: 20 — one per label — for classification, 2 for summarization)." };
        baselineOptions.AddTo(baseline);
        baseline.Add(task);
        baseline.Add(shots);
        baseline.SetAction((pr, ct) => Guard(err, () => BaselineAsync(pr, baselineOptions, pr.GetValue(task)!, pr.GetValue(shots), console, ct)));
        root.Add(baseline);

        var infer = new Command("infer", "Evaluate a trained adapter on a test file: predictions.jsonl, report.md/json (mistral_*_inference.py).");
        var inferOptions = new Options(defaultOut: "results/infer", includeAxes: false, includeData: true) { Hub = hub };
        var adapter = new Option<string>("--adapter") { Description = "The adapter folder (PEFT format: adapter_config.json + adapter_model.safetensors).", Required = true };
        var inferTask = TaskOption("classification");
        var noQuantize = new Option<bool>("--no-quantize") { Description = "Load the base in 16/32 bits instead of NF4 (for an adapter trained with LoRA rather than QLoRA)." };
        inferOptions.AddTo(infer);
        infer.Add(adapter);
        infer.Add(inferTask);
        infer.Add(noQuantize);
        infer.SetAction((pr, ct) => Guard(err, () => InferAsync(pr, inferOptions, pr.GetValue(adapter)!, pr.GetValue(inferTask)!, pr.GetValue(noQuantize), console, ct)));
        root.Add(infer);

        var sweep = new Command("sweep", "Run a sweep (sample_ablate.sh, run_lora.sh, or your axes); --shard i/n shares it between processes.");
        var sweepOptions = new Options(defaultOut: null, includeAxes: true, includeData: true) { Hub = hub };
        var preset = new Option<string?>("--preset") { Description = "sample-efficiency (Table 1: classification fractions) or lora (summarization: epochs × r × dropout, 72 runs)." };
        preset.AcceptOnlyFromAmong("sample-efficiency", "lora");
        var sweepTask = TaskOption("classification");
        var name = new Option<string?>("--name") { Description = "The sweep's name without a preset (default: sweep)." };
        var shard = new Option<string?>("--shard") { Description = "i/n: run only the runs whose index % n == i (one process per GPU, a Slurm array, an indexed Job)." };
        sweepOptions.AddTo(sweep);
        sweep.Add(preset);
        sweep.Add(sweepTask);
        sweep.Add(name);
        sweep.Add(shard);
        sweep.SetAction((pr, ct) => Guard(err, () => SweepAsync(pr, sweepOptions, pr.GetValue(preset), pr.GetResult(sweepTask) is { Implicit: false } ? pr.GetValue(sweepTask) : null,
            pr.GetValue(name), pr.GetValue(shard), console, ct)));
        root.Add(sweep);

        var report = new Command("report", "Aggregate a results folder (or the sweep folders inside it) into tables (Markdown, CSV, JSON) and PNG plots.");
        var reportOut = new Option<string>("--out") { Description = "The results folder.", DefaultValueFactory = _ => "results" };
        var price = PriceOption();
        var currency = CurrencyOption();
        report.Add(reportOut);
        report.Add(price);
        report.Add(currency);
        report.SetAction((pr, ct) => Guard(err, () => Task.FromResult(Report(pr.GetValue(reportOut)!, Cost(pr.GetValue(price), pr.GetValue(currency)!), console))));
        root.Add(report);
        return root;
    }

    private static Command TrainVerb(string verb, StudyTask task, string description, StudyConsole console, TextWriter err, Mistral.Hub.HubClientOptions? hub)
    {
        var command = new Command(verb, description);
        var options = new Options(defaultOut: $"results/{verb}", includeAxes: true, includeData: true) { Hub = hub };
        options.AddTo(command);
        command.SetAction((pr, ct) => Guard(err, async () =>
        {
            var axes = options.Axes(pr, singleValues: true);
            var definition = new SweepDefinition(verb, axes with { Modes = [EvaluationMode.FineTuned()] });
            string outFolder = pr.GetValue(options.Out) ?? $"results/{verb}";
            await RunSweepAsync(pr, options, task, definition, outFolder, SweepShard.All, console, ct).ConfigureAwait(false);
            return 0;
        }));
        return command;
    }

    private static async Task<int> StudyAsync(ParseResult pr, Options options, StudyConsole console, CancellationToken ct)
    {
        string outFolder = pr.GetValue(options.Out) ?? "results";
        console.Line("The study end to end: Table 1 (sample efficiency), the zero-/few-shot baselines, and fine-tuned summarization (Table 2).");
        await RunSweepAsync(pr, options, StudyTask.Classification, StudySweeps.SampleEfficiency, Path.Combine(outFolder, StudySweeps.SampleEfficiency.Name), SweepShard.All, console, ct).ConfigureAwait(false);
        foreach (var (task, def) in new[] { (StudyTask.Classification, StudySweeps.BaselineClassification), (StudyTask.Summarization, StudySweeps.BaselineSummarization) })
        {
            await RunSweepAsync(pr, options, task, def, Path.Combine(outFolder, def.Name), SweepShard.All, console, ct).ConfigureAwait(false);
        }

        var summarize = new SweepDefinition("summarize", new SweepAxes { Modes = [EvaluationMode.FineTuned()] });
        await RunSweepAsync(pr, options, StudyTask.Summarization, summarize, Path.Combine(outFolder, summarize.Name), SweepShard.All, console, ct).ConfigureAwait(false);
        return 0;
    }

    private static async Task<int> BaselineAsync(ParseResult pr, Options options, string task, int? shots, StudyConsole console, CancellationToken ct)
    {
        var tasks = task == "both" ? new[] { StudyTask.Classification, StudyTask.Summarization } : [ParseTask(task)];
        if (tasks.Length > 1 && (pr.GetValue(options.Train!) is not null || pr.GetValue(options.Test!) is not null))
        {
            throw new UsageException("--train/--test name one task's files; add --task classification or --task summarization (with --task both the kit's files of each task are used).");
        }

        if (shots is < 1)
        {
            throw new UsageException($"--shots must be at least 1; got {shots}.");
        }

        string outFolder = pr.GetValue(options.Out) ?? "results/baseline";
        foreach (var t in tasks)
        {
            var def = t == StudyTask.Classification ? StudySweeps.BaselineClassification : StudySweeps.BaselineSummarization;
            if (shots is int k)
            {
                def = new SweepDefinition(def.Name, def.Axes with { Modes = [EvaluationMode.ZeroShot(), EvaluationMode.FewShot(k, t == StudyTask.Classification ? FewShotSelection.FirstPerLabel : FewShotSelection.FirstK)] }, def.Layout);
            }

            await RunSweepAsync(pr, options, t, def, tasks.Length > 1 ? Path.Combine(outFolder, t.ToString().ToLowerInvariant()) : outFolder, SweepShard.All, console, ct).ConfigureAwait(false);
        }

        return 0;
    }

    private static async Task<int> SweepAsync(ParseResult pr, Options options, string? preset, string? task, string? name, string? shardText, StudyConsole console, CancellationToken ct)
    {
        SweepShard shard;
        try
        {
            shard = shardText is null ? SweepShard.All : SweepShard.Parse(shardText);
        }
        catch (FormatException e)
        {
            throw new UsageException(e.Message);
        }

        var axes = options.Axes(pr, singleValues: false);
        SweepDefinition definition;
        StudyTask studyTask;
        if (preset is not null)
        {
            if (name is not null)
            {
                throw new UsageException("--name: a preset has its own name; drop --name or --preset.");
            }

            (definition, studyTask) = preset == "sample-efficiency"
                ? (StudySweeps.SampleEfficiency, StudyTask.Classification)
                : (StudySweeps.LoraSummarization, StudyTask.Summarization);
            if (task is not null && ParseTask(task) != studyTask)
            {
                throw new UsageException($"--task {task}: the {preset} preset is a {studyTask.ToString().ToLowerInvariant()} sweep.");
            }

            // Axes given on the command line replace the preset's.
            var a = definition.Axes;
            definition = new SweepDefinition(definition.Name, new SweepAxes
            {
                TrainingFractions = axes.TrainingFractions ?? a.TrainingFractions,
                Ranks = axes.Ranks ?? a.Ranks,
                Alphas = axes.Alphas ?? a.Alphas,
                Dropouts = axes.Dropouts ?? a.Dropouts,
                TargetModules = axes.TargetModules ?? a.TargetModules,
                Epochs = axes.Epochs ?? a.Epochs,
                LearningRates = axes.LearningRates ?? a.LearningRates,
                Modes = axes.Modes ?? a.Modes,
            }, definition.Layout);
        }
        else
        {
            studyTask = ParseTask(task ?? "classification");
            definition = new SweepDefinition(name ?? "sweep", axes);
        }

        string outFolder = pr.GetValue(options.Out) ?? Path.Combine("results", definition.Name);
        await RunSweepAsync(pr, options, studyTask, definition, outFolder, shard, console, ct).ConfigureAwait(false);
        return 0;
    }

    private static async Task<int> InferAsync(ParseResult pr, Options options, string adapter, string task, bool noQuantize, StudyConsole console, CancellationToken ct)
    {
        var studyTask = ParseTask(task);
        string model = await ModelFolderAsync(pr.GetValue(options.Model)!, options.Hub, ct).ConfigureAwait(false);
        adapter = Existing(adapter, "--adapter", isFolder: true);
        string test = DataSource(pr.GetValue(options.Test!) ?? KitPaths.Test(studyTask), "--test");
        using var loggers = Loggers();
        var pipeline = MistralPipeline.Create().FromPretrained(model).WithAdapter(adapter, quantizeBase: !noQuantize).WithLogging(loggers);
        pipeline = studyTask == StudyTask.Classification ? pipeline.ForClassification() : pipeline.ForSummarization();
        options.Configure(pr, pipeline);
        var columns = studyTask == StudyTask.Classification ? ColumnMapping.Classification : ColumnMapping.Summarization;
        var read = await DatasetSource.ReadAsync(test, columns, ReadOptions.StudyCleaning, options.Hub, ct).ConfigureAwait(false);
        var examples = pr.GetValue(options.MaxTest) is int max ? read.Examples.Take(max).ToArray() : read.Examples;
        console.Line($"{test}: {read.Describe()}");
        var cost = Cost(pr.GetValue(options.PricePerHour), pr.GetValue(options.Currency)!);
        var report = await console.RunAsync("infer", async progress =>
        {
            var plan = new SweepRunPlan { Index = 0, Id = "infer", Name = Path.GetFileName(Path.GetFullPath(adapter)), Mode = EvaluationMode.FineTuned(), TrainingSamples = 0, CanonicalConfiguration = "{}" };
            var inner = new Inline<PipelineProgress>(p => progress.Report(new SweepProgress(SweepProgressKind.Working, plan, 1, 1) { Pipeline = p }));
            using LoadedPipeline loaded = await Task.Run(() => pipeline.Build(inner, ct), ct).ConfigureAwait(false);
            return await loaded.EvaluateAsync(examples, EvaluationMode.FineTuned(), options.Evaluation(pr) with { Cost = cost }, inner, ct).ConfigureAwait(false);
        }).ConfigureAwait(false);
        string outFolder = pr.GetValue(options.Out) ?? "results/infer";
        report.Save(outFolder);
        console.Line(report.ToMarkdown());
        console.Line($"Wrote {Path.Combine(outFolder, "predictions.jsonl")}, report.md and report.json.");
        return 0;
    }

    private static async Task RunSweepAsync(ParseResult pr, Options options, StudyTask task, SweepDefinition definition, string outFolder, SweepShard shard,
        StudyConsole console, CancellationToken ct)
    {
        string model = await ModelFolderAsync(pr.GetValue(options.Model)!, options.Hub, ct).ConfigureAwait(false);
        string train = DataSource((options.Train is null ? null : pr.GetValue(options.Train)) ?? KitPaths.Train(task), "--train");
        string test = DataSource((options.Test is null ? null : pr.GetValue(options.Test)) ?? KitPaths.Test(task), "--test");
        using var loggers = Loggers();
        var pipeline = (task == StudyTask.Classification ? StudySweeps.ClassificationPipeline(model) : StudySweeps.SummarizationPipeline(model)).WithLogging(loggers);
        options.Configure(pr, pipeline);
        var columns = task == StudyTask.Classification ? ColumnMapping.Classification : ColumnMapping.Summarization;
        var data = (await SweepData.ReadAsync(train, test, columns, ReadOptions.StudyCleaning, options.Hub, ct).ConfigureAwait(false))
            .Take(pr.GetValue(options.MaxTrain), pr.GetValue(options.MaxTest));
        var cost = Cost(pr.GetValue(options.PricePerHour), pr.GetValue(options.Currency)!);
        var runner = new SweepRunner(loggers.CreateLogger<SweepRunner>());
        var plan = SweepRunner.Plan(definition, pipeline, data);
        console.Line(string.Create(CultureInfo.InvariantCulture,
            $"{definition.Name}: {plan.Count} run(s) on {data.Train.Count} training / {data.Test.Count} test examples, shard {shard} → {outFolder}"));
        var summary = await console.RunAsync(definition.Name, progress =>
            runner.RunAsync(definition, pipeline, data, outFolder, new SweepRunOptions { Shard = shard, Cost = cost }, progress, ct)).ConfigureAwait(false);
        console.Line($"{definition.Name}: {summary.Executed.Count} run(s) done, {summary.Skipped.Count} already complete.");
        Report(outFolder, cost, console);
    }

    private static int Report(string folder, CostModel? cost, StudyConsole console)
    {
        if (!Directory.Exists(folder))
        {
            throw new UsageException($"--out: '{folder}' does not exist.");
        }

        var sweeps = Directory.Exists(Path.Combine(folder, SweepRunner.RunsFolder))
            ? [folder]
            : Directory.EnumerateDirectories(folder).Where(d => Directory.Exists(Path.Combine(d, SweepRunner.RunsFolder))).Order(StringComparer.Ordinal).ToArray();
        if (sweeps.Length == 0)
        {
            throw new UsageException($"--out: '{folder}' holds no sweep results (a '{SweepRunner.RunsFolder}' folder, or sweep folders holding one).");
        }

        foreach (string sweep in sweeps)
        {
            var results = SweepResults.Load(sweep);
            if (results.Runs.Count == 0)
            {
                console.Line($"{sweep}: no completed run yet.");
                continue;
            }

            var table = SweepTable.From(results, cost);
            var files = table.Save(sweep).Concat(SweepPlots.SaveAll(results, Path.Combine(sweep, "plots"))).ToArray();
            console.Line(table.ToMarkdown());
            console.Line($"Wrote {string.Join(", ", files.Select(f => Path.GetRelativePath(sweep, f)))} in {sweep}");
        }

        return 0;
    }

    private static async Task<int> Guard(TextWriter err, Func<Task<int>> action)
    {
        try
        {
            return await action().ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            await err.WriteLineAsync("cancelled: completed runs are kept; run the same command again to resume.").ConfigureAwait(false);
            return 130;
        }
        catch (UsageException e)
        {
            await err.WriteLineAsync("error: " + e.Message).ConfigureAwait(false);
            return 2;
        }
        catch (Mistral.Hub.HubException e)
        {
            // A Hub repository, revision or file that is missing or refused: missing input, like a missing local file.
            await err.WriteLineAsync("error: " + e.Message).ConfigureAwait(false);
            return 2;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or InvalidDataException or DatasetException or FormatException)
        {
            await err.WriteLineAsync($"error: {e.Message}").ConfigureAwait(false);
            return 1;
        }
    }

    /// <summary>A local model folder for <c>--model</c>: an existing folder, or a Hub id (org/name[@revision]) fetched into the huggingface_hub cache.</summary>
    private static async Task<string> ModelFolderAsync(string value, Mistral.Hub.HubClientOptions? hub, CancellationToken ct)
    {
        if (Directory.Exists(value) || value.StartsWith("kit/", StringComparison.Ordinal)
            || !Mistral.Hub.HubClient.TryParseModelReference(value, out string repo, out string revision))
        {
            return Existing(value, "--model", isFolder: true);
        }

        using var client = new Mistral.Hub.HubClient(hub);
        try
        {
            return await client.ResolveModelFolderAsync(repo, revision, cancellationToken: ct).ConfigureAwait(false);
        }
        catch (Mistral.Hub.HubException e)
        {
            throw new UsageException($"--model {value}: {e.Message}");
        }
    }

    /// <summary>A data option's value: an HF URI (checked here, downloaded when read) or an existing file.</summary>
    private static string DataSource(string value, string option)
    {
        if (!DatasetSource.IsHubUri(value))
        {
            return Existing(value, option, isFolder: false);
        }

        try
        {
            _ = Mistral.Hub.HubUri.Parse(value);
            return value;
        }
        catch (FormatException e)
        {
            throw new UsageException($"{option}: {e.Message}");
        }
    }

    private static string Existing(string path, string option, bool isFolder)
    {
        bool exists = isFolder ? Directory.Exists(path) : File.Exists(path);
        if (!exists)
        {
            bool kit = path.StartsWith("kit/", StringComparison.Ordinal);
            throw new UsageException($"{option}: '{path}' does not exist ({Path.GetFullPath(path)})."
                + (kit ? $" It is the default, from the embedded kit (kit/model, kit/data), which this checkout does not have yet; pass {option} PATH." : string.Empty));
        }

        return path;
    }

    private static StudyTask ParseTask(string task) => task switch
    {
        "classification" => StudyTask.Classification,
        "summarization" => StudyTask.Summarization,
        _ => throw new UsageException($"--task '{task}': expected classification or summarization."),
    };

    private static CostModel? Cost(decimal? price, string currency)
    {
        if (price is null or 0)
        {
            return null;
        }

        if (price < 0)
        {
            throw new UsageException($"--price-per-hour must be positive (or 0 for no cost figures); got {price}.");
        }

        return new CostModel(price.Value, currency);
    }

    private static ILoggerFactory Loggers() => LoggerFactory.Create(b => b
        .AddSimpleConsole(o => o.SingleLine = true)
        .SetMinimumLevel(LogLevel.Warning));

    private static Option<string> TaskOption(string defaultValue)
    {
        var o = new Option<string>("--task") { Description = "classification or summarization" + (defaultValue == "both" ? " or both" : string.Empty) + ".", DefaultValueFactory = _ => defaultValue };
        if (defaultValue == "both")
        {
            o.AcceptOnlyFromAmong("both", "classification", "summarization");
        }
        else
        {
            o.AcceptOnlyFromAmong("classification", "summarization");
        }

        return o;
    }

    internal static Option<decimal?> PriceOption() => new("--price-per-hour")
    {
        Description = "Price of one hour of the machine for the cost columns (default 1.212: an AWS g5.2xlarge on demand, the study's machine); 0 for none.",
        DefaultValueFactory = _ => 1.212m,
    };

    internal static Option<string> CurrencyOption() => new("--currency") { Description = "The price's currency.", DefaultValueFactory = _ => "USD" };

    private sealed class Inline<T>(Action<T> handler) : IProgress<T>
    {
        public void Report(T value) => handler(value);
    }
}
