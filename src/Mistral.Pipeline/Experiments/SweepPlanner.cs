using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mistral.Eval.Data;
using Mistral.Peft.Lora;
using TorchSharp;

namespace Mistral.Pipeline.Experiments;

/// <summary>Expands a sweep over a base pipeline into resolved runs with stable ids.</summary>
internal static class SweepPlanner
{
    /// <summary>Bumped when the meaning of a configuration changes, so older results are not reused.</summary>
    public const int Format = 1;

    public static IReadOnlyList<SweepRunPlan> Plan(SweepDefinition sweep, MistralPipeline basePipeline, SweepData data)
    {
        ArgumentNullException.ThrowIfNull(sweep);
        ArgumentNullException.ThrowIfNull(basePipeline);
        ArgumentNullException.ThrowIfNull(data);
        var s = basePipeline.Settings;
        var task = s.Task ?? throw new InvalidOperationException("Sweep: the base pipeline has no task; call ForClassification(), ForSummarization() or ForTask(task).");
        if (s.ModelFolder is null)
        {
            throw new InvalidOperationException("Sweep: the base pipeline has no model; call FromPretrained(folder).");
        }

        if (!File.Exists(Path.Combine(s.ModelFolder, "config.json")))
        {
            throw new FileNotFoundException($"Sweep: FromPretrained(\"{s.ModelFolder}\"): no config.json in the folder.", Path.Combine(s.ModelFolder, "config.json"));
        }

        var axes = sweep.Axes;
        var modes = axes.Modes ?? [EvaluationMode.FineTuned()];
        bool trains = modes.Any(m => m.UsesAdapter);
        bool loraAxes = axes.Ranks is not null || axes.Alphas is not null || axes.Dropouts is not null || axes.TargetModules is not null;
        if (trains && s.Adapter == AdapterChoice.None && s.AdapterFolder is null)
        {
            throw new InvalidOperationException("Sweep: fine-tuned runs need an adapter to train; call WithQLoRA(…) or WithLoRA(…) on the base pipeline.");
        }

        if (loraAxes && s.Lora is null)
        {
            throw new InvalidOperationException("Sweep: LoRA axes (Ranks, Alphas, Dropouts, TargetModules) need a new adapter on the base pipeline (WithQLoRA/WithLoRA), not WithAdapter(folder).");
        }

        for (int i = 0; i < data.Train.Count; i++)
        {
            task.Validate(data.Train[i], i, "train");
        }

        for (int i = 0; i < data.Test.Count; i++)
        {
            task.Validate(data.Test[i], i, "test");
        }

        JsonObject model = ModelIdentity(s);
        var subsets = new Dictionary<double, IReadOnlyList<Example>>();
        var plans = new List<SweepRunPlan>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var mode in modes)
        {
            bool fineTuned = mode.UsesAdapter;
            bool usesData = mode.Kind != EvaluationModeKind.ZeroShot;
            foreach (double? fraction in usesData ? Values(axes.TrainingFractions) : [null])
            {
                foreach (int? epochs in fineTuned ? Values(axes.Epochs) : [null])
                {
                    foreach (double? lr in fineTuned ? Values(axes.LearningRates) : [null])
                    {
                        foreach (int? r in fineTuned ? Values(axes.Ranks) : [null])
                        {
                            foreach (double? alpha in fineTuned ? Values(axes.Alphas) : [null])
                            {
                                foreach (double? dropout in fineTuned ? Values(axes.Dropouts) : [null])
                                {
                                    foreach (var targets in fineTuned && axes.TargetModules is not null ? axes.TargetModules.Select(t => (IReadOnlyList<string>?)t) : [null])
                                    {
                                        var plan = Resolve(sweep, basePipeline, task, data, model, subsets, mode, usesData ? fraction : null, epochs, lr, r, alpha, dropout, targets, plans.Count);
                                        if (seen.Add(plan.Id))
                                        {
                                            plans.Add(plan);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        return plans;
    }

    private static IEnumerable<T?> Values<T>(IReadOnlyList<T>? axis)
        where T : struct =>
        axis is null ? [null] : axis.Select(v => (T?)v);

    private static SweepRunPlan Resolve(SweepDefinition sweep, MistralPipeline basePipeline, PipelineTask task, SweepData data, JsonObject model,
        Dictionary<double, IReadOnlyList<Example>> subsets, EvaluationMode mode, double? fraction, int? epochs, double? lr, int? r, double? alpha,
        double? dropout, IReadOnlyList<string>? targets, int index)
    {
        var pipeline = basePipeline.Clone();
        var s = pipeline.Settings;
        bool fineTuned = mode.UsesAdapter;
        if (fineTuned && s.Lora is not null && (r is not null || alpha is not null || dropout is not null || targets is not null))
        {
            var changed = s.Lora! with
            {
                R = r ?? s.Lora!.R,
                Alpha = alpha ?? s.Lora!.Alpha,
                Dropout = dropout ?? s.Lora!.Dropout,
                TargetModules = targets ?? s.Lora!.TargetModules,
            };
            pipeline.WithLoRA(changed, quantizeBase: s.Adapter == AdapterChoice.QLora);
        }

        if (fineTuned && (epochs is not null || lr is not null))
        {
            pipeline.WithTrainingOptions(o => o with { Epochs = epochs ?? o.Epochs, LearningRate = lr ?? o.LearningRate });
        }

        s = pipeline.Settings;
        IReadOnlyList<Example> train = mode.Kind == EvaluationModeKind.ZeroShot ? [] : Subsample(task, data.Train, fraction, sweep.SubsampleSeed, subsets);
        string device = DeviceType(s.DeviceName);
        var config = new JsonObject
        {
            ["format"] = Format,
            ["task"] = TaskIdentity(task),
            ["model"] = model.DeepClone(),
            ["device"] = device,
            ["dtype"] = (s.DType ?? (device == "cuda" ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32)).ToString(),
            ["quantized_base"] = s.Adapter == AdapterChoice.QLora || (s.AdapterFolder is not null && s.QuantizeAdapterBase),
            ["nf4"] = s.Nf4 is null ? null : JsonSerializer.SerializeToNode(s.Nf4, CanonicalJson.Options),
            ["seed"] = s.Seed,
            ["data"] = data.Identity.DeepClone(),
            ["subsample"] = mode.Kind == EvaluationModeKind.ZeroShot ? null : new JsonObject
            {
                ["fraction"] = fraction,
                ["method"] = fraction is null or 1.0 ? "all" : task.HasLabels ? "stratified" : "random",
                ["seed"] = sweep.SubsampleSeed,
                ["samples"] = train.Count,
            },
            ["mode"] = new JsonObject
            {
                ["kind"] = mode.Kind.ToString(),
                ["shots"] = mode.Kind == EvaluationModeKind.FewShot ? mode.Shots : null,
                ["selection"] = mode.Kind == EvaluationModeKind.FewShot ? mode.Selection.ToString() : null,
                ["selection_seed"] = mode.Kind == EvaluationModeKind.FewShot && mode.Selection == FewShotSelection.RandomK ? mode.Seed : null,
            },
            ["evaluation"] = new JsonObject
            {
                ["batch_size"] = s.Evaluation.BatchSize,
                ["context_length"] = s.Evaluation.ContextLength,
                ["prompt_overflow"] = s.Evaluation.PromptOverflow.ToString(),
            },
        };
        LoraOptions? resolvedLora = null;
        if (fineTuned)
        {
            resolvedLora = s.Lora is { } l ? l with { Seed = l.Seed ?? s.Seed, TargetModules = l.TargetModules ?? LoraOptions.DefaultTargetModules } : null;
            var training = s.Training with { Seed = s.Seed ?? s.Training.Seed, LogEverySteps = 1, ReportEverySteps = null, CheckpointFolder = null, BaseModelNameOrPath = null };
            var trainingNode = JsonSerializer.SerializeToNode(training, CanonicalJson.Options)!.AsObject();
            trainingNode.Remove("log_every_steps");
            trainingNode.Remove("report_every_steps");
            trainingNode.Remove("checkpoint_folder");
            trainingNode.Remove("base_model_name_or_path");
            config["adapter"] = s.AdapterFolder is { } folder ? AdapterIdentity(folder) : null;
            config["lora"] = resolvedLora is null ? null : JsonSerializer.SerializeToNode(resolvedLora, CanonicalJson.Options);
            config["training"] = trainingNode;
            config["data_format"] = s.CompletionOnly is { } c
                ? new JsonObject { ["completion_only"] = JsonSerializer.SerializeToNode(c, CanonicalJson.Options) }
                : new JsonObject { ["packing"] = JsonSerializer.SerializeToNode(s.Packing, CanonicalJson.Options) };
        }

        string canonical = CanonicalJson.Serialize(config);
        string id = CanonicalJson.Sha256(canonical);
        var ci = CultureInfo.InvariantCulture;
        string slug = mode.Kind switch
        {
            EvaluationModeKind.ZeroShot => "zero-shot",
            EvaluationModeKind.FewShot => string.Create(ci, $"few-shot-k{mode.Shots}{(fraction is double f ? $"-f{f:0.####}" : string.Empty)}"),
            _ => string.Create(ci, $"ft{(fraction is double f2 ? $"-f{f2:0.####}" : string.Empty)}-r{resolvedLora?.R}-a{resolvedLora?.Alpha:0.###}-d{resolvedLora?.Dropout:0.###}-e{s.Training.Epochs}-lr{s.Training.LearningRate:0.######}"),
        };
        return new SweepRunPlan
        {
            Index = index,
            Id = id,
            Name = $"{slug}-{id[..12]}",
            Mode = mode,
            Fraction = fraction,
            TrainingSamples = train.Count,
            R = resolvedLora?.R,
            Alpha = resolvedLora?.Alpha,
            Dropout = resolvedLora?.Dropout,
            TargetModules = resolvedLora?.TargetModules,
            Epochs = fineTuned ? s.Training.Epochs : null,
            LearningRate = fineTuned ? s.Training.LearningRate : null,
            CanonicalConfiguration = canonical,
            Train = train,
            Pipeline = pipeline,
        };
    }

    private static IReadOnlyList<Example> Subsample(PipelineTask task, IReadOnlyList<Example> train, double? fraction, uint seed, Dictionary<double, IReadOnlyList<Example>> cache)
    {
        if (fraction is not double f || f >= 1)
        {
            return train;
        }

        if (cache.TryGetValue(f, out var hit))
        {
            return hit;
        }

        IReadOnlyList<Example> subset;
        try
        {
            subset = task.HasLabels
                ? DataSplitter.StratifiedSubsample(train, e => e.Target, f, seed).Train
                : RandomSubsample(train, f, seed);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"SweepAxes.TrainingFractions: {f.ToString(CultureInfo.InvariantCulture)} of {train.Count} training examples: {(e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", string.Empty, StringComparison.Ordinal))}", e);
        }

        cache[f] = subset;
        return subset;
    }

    /// <summary>scikit-learn's <c>train_test_split(items, train_size=f, random_state=seed)[0]</c>: a permutation; test = its head, train = the next floor(f·n).</summary>
    internal static IReadOnlyList<Example> RandomSubsample(IReadOnlyList<Example> items, double fraction, uint seed)
    {
        int n = items.Count;
        int nTrain = (int)Math.Floor(fraction * n);
        int nTest = n - nTrain;
        if (nTrain < 1 || nTest < 1)
        {
            throw new ArgumentException($"a fraction of {fraction.ToString(CultureInfo.InvariantCulture)} leaves {nTrain} training and {nTest} other rows; both must be at least 1.");
        }

        int[] perm = new NumpyRandomState(seed).Permutation(n);
        return perm.AsSpan(nTest, nTrain).ToArray().Select(i => items[i]).ToArray();
    }

    private static string DeviceType(string? name)
    {
        string device = name ?? (torch.cuda.is_available() ? "cuda" : "cpu");
        int colon = device.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? device : device[..colon];
    }

    private static JsonObject TaskIdentity(PipelineTask task)
    {
        var o = new JsonObject
        {
            ["type"] = task.GetType().FullName,
            ["name"] = task.Name,
            ["input_column"] = task.Columns.InputColumn,
            ["target_column"] = task.Columns.TargetColumn,
        };
        try
        {
            o["settings"] = JsonSerializer.SerializeToNode(task, task.GetType(), CanonicalJson.Options);
        }
        catch (Exception e) when (e is NotSupportedException or InvalidOperationException or JsonException or ArgumentException)
        {
            // A custom task whose settings do not serialize is identified by its type, name and columns.
        }

        return o;
    }

    /// <summary>The length of a file's content, through a symlink (a Hub cache snapshot's files are links; FileInfo.Length is the link's own).</summary>
    private static long ContentLength(string path)
    {
        using var handle = File.OpenHandle(path);
        return RandomAccess.GetLength(handle);
    }

    private static JsonObject ModelIdentity(PipelineSettings s)
    {
        string folder = s.ModelFolder!;
        var files = Directory.EnumerateFiles(folder)
            .Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal) || f.EndsWith(".safetensors.index.json", StringComparison.Ordinal) || f.EndsWith(".bin", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(f => (JsonNode?)new JsonObject { ["name"] = Path.GetFileName(f), ["size"] = ContentLength(f) })
            .ToArray();
        return new JsonObject
        {
            ["config_sha256"] = HashFile(Path.Combine(folder, "config.json")),
            ["tokenizer_sha256"] = HashFile(Path.Combine(folder, "tokenizer.model")),
            ["weights"] = new JsonArray(files),
        };
    }

    private static JsonObject AdapterIdentity(string folder) => new()
    {
        ["config_sha256"] = HashFile(Path.Combine(folder, "adapter_config.json")),
        ["weights_sha256"] = HashFile(Path.Combine(folder, "adapter_model.safetensors")),
    };

    private static string? HashFile(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
