using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mistral.Core.Checkpoints;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// The training state written next to a checkpoint's weights so that a run can resume exactly: <c>trainer_state.json</c>
/// (Hugging Face Trainer's file name and <c>global_step</c>/<c>max_steps</c>/<c>log_history</c> keys, plus the run's shape
/// and each parameter's AdamW step) and <c>optimizer.safetensors</c> (the AdamW moments <c>exp_avg.{i}</c> and
/// <c>exp_avg_sq.{i}</c> of the trained parameters, in the trainer's parameter order). The learning-rate schedule
/// position is the step; the data position is the step within its epoch (the shuffle is a pure function of the seed and
/// the epoch); LoRA dropout draws from TorchSharp's process-wide generator, which is neither saved nor restored.
/// </summary>
internal sealed record TrainerState(
    int GlobalStep,
    int MaxSteps,
    int StepsPerEpoch,
    int Epochs,
    long Seed,
    int PerDeviceBatchSize,
    int GradientAccumulationSteps,
    int DataCount,
    long Tokens,
    int SkippedSteps,
    IReadOnlyList<long> AdamSteps,
    IReadOnlyList<TrainingStep> LogHistory)
{
    /// <summary>The state file's name (Hugging Face Trainer's).</summary>
    public const string FileName = "trainer_state.json";

    /// <summary>The optimizer state file's name.</summary>
    public const string OptimizerFileName = "optimizer.safetensors";

    /// <summary>The key of the default CPU generator's state in the optimizer state file.</summary>
    public const string RngStateKey = "rng_state.cpu";

    /// <summary>Writes both files into <paramref name="directory"/>; returns their names.</summary>
    public IReadOnlyList<string> Write(string directory, optim.Optimizer optimizer, CancellationToken cancellationToken)
    {
        var states = AdamStates(optimizer);
        using (var scope = NewDisposeScope())
        {
            var tensors = new List<KeyValuePair<string, Tensor>>();
            for (int i = 0; i < states.Count; i++)
            {
                tensors.Add(new($"exp_avg.{i}", states[i].exp_avg.detach().cpu()));
                tensors.Add(new($"exp_avg_sq.{i}", states[i].exp_avg_sq.detach().cpu()));
            }

            // TorchSharp's default CPU generator (LoRA dropout draws from it on CPU), as transformers' Trainer saves its RNG states.
            tensors.Add(new(RngStateKey, TorchSharp.torch.random.get_rng_state()));
            SafeTensorsWriter.Write(Path.Combine(directory, OptimizerFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" }, cancellationToken);
        }

        var json = new JsonObject
        {
            ["global_step"] = GlobalStep,
            ["epoch"] = (double)GlobalStep / StepsPerEpoch,
            ["max_steps"] = MaxSteps,
            ["num_train_epochs"] = Epochs,
            ["steps_per_epoch"] = StepsPerEpoch,
            ["seed"] = Seed,
            ["train_batch_size"] = PerDeviceBatchSize,
            ["gradient_accumulation_steps"] = GradientAccumulationSteps,
            ["data_count"] = DataCount,
            ["tokens"] = Tokens,
            ["skipped_steps"] = SkippedSteps,
            ["adam_steps"] = new JsonArray([.. AdamSteps.Select(s => (JsonNode)s)]),
            ["log_history"] = new JsonArray([.. LogHistory.Select(s => (JsonNode)new JsonObject
            {
                ["step"] = s.Step,
                ["epoch"] = s.Epoch,
                ["loss"] = s.Loss,
                ["grad_norm"] = s.GradNorm,
                ["learning_rate"] = s.LearningRate,
                ["micro_batches"] = s.MicroBatches,
                ["tokens"] = s.Tokens,
                ["target_tokens"] = s.TargetTokens,
            })]),
        };
        using (var fs = new FileStream(Path.Combine(directory, FileName), FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            fs.Write(new UTF8Encoding(false).GetBytes(json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
            fs.Flush(flushToDisk: true);
        }

        return [OptimizerFileName, FileName];
    }

    /// <summary>Reads <c>trainer_state.json</c> from <paramref name="folder"/>.</summary>
    /// <exception cref="InvalidDataException">The file is malformed (file and key named).</exception>
    public static TrainerState Read(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"'{folder}' holds no {FileName}: it is not a checkpoint written with its training state.", path);
        }

        try
        {
            var root = JsonNode.Parse(File.ReadAllText(path, Encoding.UTF8))!.AsObject();
            int Int(JsonNode? n, string key) => n?[key]?.GetValue<int>() ?? throw new InvalidDataException($"{path}: '{key}' is missing.");
            long Long(JsonNode? n, string key) => n?[key]?.GetValue<long>() ?? throw new InvalidDataException($"{path}: '{key}' is missing.");
            double Double(JsonNode? n, string key) => n?[key]?.GetValue<double>() ?? throw new InvalidDataException($"{path}: '{key}' is missing.");
            var history = (root["log_history"] as JsonArray ?? throw new InvalidDataException($"{path}: 'log_history' is missing."))
                .Select(h => new TrainingStep(Int(h, "step"), Int(h, "epoch"), Int(h, "micro_batches"), Double(h, "loss"), Double(h, "grad_norm"), Long(h, "tokens"), TimeSpan.Zero)
                {
                    LearningRate = Double(h, "learning_rate"),
                    TargetTokens = Long(h, "target_tokens"),
                })
                .ToList();
            var adamSteps = (root["adam_steps"] as JsonArray ?? throw new InvalidDataException($"{path}: 'adam_steps' is missing."))
                .Select(n => n!.GetValue<long>()).ToList();
            return new TrainerState(Int(root, "global_step"), Int(root, "max_steps"), Int(root, "steps_per_epoch"), Int(root, "num_train_epochs"),
                Long(root, "seed"), Int(root, "train_batch_size"), Int(root, "gradient_accumulation_steps"), Int(root, "data_count"),
                Long(root, "tokens"), Int(root, "skipped_steps"), adamSteps, history);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new InvalidDataException($"{path}: not a valid trainer state ({e.Message}).", e);
        }
    }

    /// <summary>Checks that this state belongs to a run with the same shape as the one resuming it (the mismatching field named).</summary>
    public void CheckMatches(string folder, TrainingOptions options, int stepsPerEpoch, int totalSteps, int dataCount)
    {
        void Same(string key, long saved, long now, string what)
        {
            if (saved != now)
            {
                throw new ArgumentException(
                    $"{Path.Combine(folder, FileName)}: '{key}' is {saved.ToString(CultureInfo.InvariantCulture)} but this run has {what} {now.ToString(CultureInfo.InvariantCulture)}; resume with the options and data of the interrupted run.",
                    "options");
            }
        }

        Same("data_count", DataCount, dataCount, "data.Count");
        Same("train_batch_size", PerDeviceBatchSize, options.PerDeviceBatchSize, "PerDeviceBatchSize");
        Same("gradient_accumulation_steps", GradientAccumulationSteps, options.GradientAccumulationSteps, "GradientAccumulationSteps");
        Same("seed", Seed, options.Seed, "Seed");
        Same("steps_per_epoch", StepsPerEpoch, stepsPerEpoch, "steps per epoch");
        Same("max_steps", MaxSteps, totalSteps, "total steps");
    }

    /// <summary>Loads the AdamW moments and steps from <paramref name="folder"/> into <paramref name="optimizer"/>'s state.</summary>
    public void LoadOptimizer(string folder, optim.Optimizer optimizer)
    {
        string path = Path.Combine(folder, OptimizerFileName);
        var states = AdamStates(optimizer);
        if (AdamSteps.Count != states.Count)
        {
            throw new ArgumentException($"{Path.Combine(folder, FileName)}: 'adam_steps' has {AdamSteps.Count} entries but {states.Count} parameters are trained.", "options");
        }

        using var file = SafeTensorsFile.Open(path);
        using var guard = no_grad();
        for (int i = 0; i < states.Count; i++)
        {
            foreach (var (key, target) in new[] { ($"exp_avg.{i}", states[i].exp_avg), ($"exp_avg_sq.{i}", states[i].exp_avg_sq) })
            {
                if (!file.Tensors.TryGetValue(key, out var info) || !info.Shape.SequenceEqual(target.shape))
                {
                    throw new InvalidDataException($"{path}: '{key}' is missing or not shaped [{string.Join(", ", target.shape)}] like trained parameter {i}.");
                }

                using var saved = file.Load(key);
                target.copy_(saved);
            }

            states[i].step = AdamSteps[i];
        }

        // Resuming continues the random stream where the checkpoint left it (transformers' Trainer does the same), so
        // dropout masks drawn on the CPU match the uninterrupted run. Older checkpoints without it resume without.
        if (file.Tensors.ContainsKey(RngStateKey))
        {
            using var rng = file.Load(RngStateKey);
            TorchSharp.torch.random.set_rng_state(rng);
        }
    }

    /// <summary>The AdamW step count of each trained parameter, in the trainer's order.</summary>
    public static IReadOnlyList<long> Steps(optim.Optimizer optimizer) => [.. AdamStates(optimizer).Select(s => s.step)];

    private static List<AdamW.State> AdamStates(optim.Optimizer optimizer)
    {
        var dict = ((OptimizerHelper)optimizer).state_dict();
        return [.. dict.State.Cast<AdamW.State>()];
    }
}
