using System.CommandLine;
using System.Globalization;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Mistral.Pipeline;
using Mistral.Pipeline.Experiments;

namespace Mistral.Samples.Study;

/// <summary>The options a verb shares: inputs and outputs, the price, training knobs, and (for training verbs) the sweep axes.</summary>
internal sealed class Options
{
    public Options(string? defaultOut, bool includeAxes, bool includeData)
    {
        Out = new Option<string?>("--out") { Description = $"The results folder (default {defaultOut ?? "results/<sweep name>"})." };
        if (defaultOut is not null)
        {
            Out.DefaultValueFactory = _ => defaultOut;
        }

        if (includeData)
        {
            Train = new Option<string?>("--train")
            {
                Description = "Training data: a JSONL, CSV or Parquet file with text/label (classification) or dialogue/summary (summarization), or a Hub dataset's files as an HF URI, "
                    + "hf://datasets/org/name[@revision]/path-or-glob (e.g. hf://datasets/rungalileo/20_Newsgroups_Fixed/data/train-*.parquet); default kit/data/<task>/train.parquet.",
            };
            Test = new Option<string?>("--test") { Description = "Test data, same forms; default kit/data/<task>/test.parquet." };
        }

        if (includeAxes)
        {
            Fractions = List("--fraction", "--fractions", "Training fraction(s) in (0, 1]: a stratified (classification) or random (summarization) subsample, seed 42.");
            Ranks = List("--r", "--ranks", "LoRA rank(s).");
            Alphas = List("--alpha", "--alphas", "LoRA alpha(s).");
            Dropouts = List("--dropout", "--dropouts", "LoRA dropout(s).");
            Targets = new Option<string?>("--targets") { Description = "LoRA target modules: names joined by '+' (q_proj+v_proj), 'all' for the seven projections; several sets separated by ';'." };
            Epochs = List("--epochs", null, "Training epoch(s).");
            LearningRates = List("--lr", "--learning-rates", "Learning rate(s).");
            Modes = new Option<string?>("--modes") { Description = "Evaluation mode(s): zero-shot, few-shot or few-shot:K, fine-tuned (comma-separated; sweep only)." };
        }
    }

    public Option<string> Model { get; } = new("--model") { Description = "Hugging Face checkpoint folder (config.json, safetensors, tokenizer.model) or a Hub id org/name[@revision]; default the embedded kit's kit/model.", DefaultValueFactory = _ => KitPaths.Model };

    /// <summary>How Hub ids and HF URIs reach the Hub; null reads HF_ENDPOINT, HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE from the environment.</summary>
    public Mistral.Hub.HubClientOptions? Hub { get; init; }

    public Option<string?>? Train { get; }

    public Option<string?>? Test { get; }

    public Option<string?> Out { get; }

    public Option<string?> Device { get; } = new("--device") { Description = "cpu, cuda or cuda:N (default: CUDA when available, else CPU)." };

    public Option<decimal?> PricePerHour { get; } = StudyCli.PriceOption();

    public Option<string> Currency { get; } = StudyCli.CurrencyOption();

    public Option<int?> MaxTrain { get; } = new("--max-train") { Description = "Use only the first N training examples (a quick run)." };

    public Option<int?> MaxTest { get; } = new("--max-test") { Description = "Evaluate only the first N test examples (a quick run)." };

    public Option<int?> SequenceLength { get; } = new("--seq-len") { Description = "Packing block length in tokens (the study's: 512)." };

    public Option<int?> BatchSize { get; } = new("--batch-size") { Description = "Per-device training batch (the study's: 4)." };

    public Option<int?> GradientAccumulation { get; } = new("--grad-accum") { Description = "Gradient accumulation steps (the study's: 2)." };

    public Option<int?> EvalBatchSize { get; } = new("--eval-batch-size") { Description = "Prompts generated together (default 8; the study: 1)." };

    public Option<long?> Seed { get; } = new("--seed") { Description = "Seed of LoRA init, shuffle and sampling (default 42)." };

    public Option<string?>? Fractions { get; }

    public Option<string?>? Ranks { get; }

    public Option<string?>? Alphas { get; }

    public Option<string?>? Dropouts { get; }

    public Option<string?>? Targets { get; }

    public Option<string?>? Epochs { get; }

    public Option<string?>? LearningRates { get; }

    public Option<string?>? Modes { get; }

    public void AddTo(Command command)
    {
        foreach (Option? o in new Option?[] { Model, Train, Test, Out, Device, PricePerHour, Currency, MaxTrain, MaxTest, SequenceLength, BatchSize, GradientAccumulation, EvalBatchSize, Seed,
                     Fractions, Ranks, Alphas, Dropouts, Targets, Epochs, LearningRates, Modes })
        {
            if (o is not null)
            {
                command.Add(o);
            }
        }
    }

    /// <summary>Applies the knobs that are not axes to the base pipeline.</summary>
    public void Configure(ParseResult pr, MistralPipeline pipeline)
    {
        if (pr.GetValue(Device) is { } device)
        {
            if (device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase))
            {
                try
                {
                    // An application's own choice: load the CUDA backend before the first tensor (TorchSharp needs it).
                    TorchSharp.torch.InitializeDeviceType(TorchSharp.DeviceType.CUDA);
                }
                catch (Exception e) when (e is InvalidOperationException or NotSupportedException or DllNotFoundException or TypeInitializationException)
                {
                    throw new UsageException($"--device {device}: CUDA could not be initialised ({e.Message}); this sample references TorchSharp-cpu — run it with a CUDA libtorch (TorchSharp-cuda-linux).");
                }
            }

            pipeline.OnDevice(device);
        }

        if (pr.GetValue(SequenceLength) is int seq)
        {
            pipeline.WithPacking(SftPackingOptions.Study with { SequenceLength = Positive(seq, "--seq-len") });
        }

        int? batch = pr.GetValue(BatchSize), accumulation = pr.GetValue(GradientAccumulation);
        if (batch is not null || accumulation is not null)
        {
            pipeline.WithTrainingOptions(o => o with
            {
                PerDeviceBatchSize = batch is int b ? Positive(b, "--batch-size") : o.PerDeviceBatchSize,
                GradientAccumulationSteps = accumulation is int a ? Positive(a, "--grad-accum") : o.GradientAccumulationSteps,
            });
        }

        pipeline.WithEvaluationOptions(Evaluation(pr));
        if (pr.GetValue(Seed) is long seed)
        {
            pipeline.WithSeed(seed);
        }

        if (pr.GetValue(MaxTrain) is < 1 || pr.GetValue(MaxTest) is < 1)
        {
            throw new UsageException("--max-train and --max-test must be at least 1.");
        }
    }

    public EvaluationOptions Evaluation(ParseResult pr) =>
        pr.GetValue(EvalBatchSize) is int b ? new EvaluationOptions { BatchSize = Positive(b, "--eval-batch-size") } : new EvaluationOptions();

    /// <summary>The sweep axes given on the command line (null where an option is absent).</summary>
    public SweepAxes Axes(ParseResult pr, bool singleValues)
    {
        if (Fractions is null)
        {
            return new SweepAxes();
        }

        var axes = new SweepAxes
        {
            TrainingFractions = Parse(pr, Fractions, double.Parse),
            Ranks = Parse(pr, Ranks!, int.Parse),
            Alphas = Parse(pr, Alphas!, double.Parse),
            Dropouts = Parse(pr, Dropouts!, double.Parse),
            TargetModules = pr.GetValue(Targets!) is { } t ? t.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(TargetSet).ToArray() : null,
            Epochs = Parse(pr, Epochs!, int.Parse),
            LearningRates = Parse(pr, LearningRates!, double.Parse),
            Modes = pr.GetValue(Modes!) is { } m ? m.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Mode).ToArray() : null,
        };
        if (singleValues)
        {
            foreach (var (name, count) in new[] { ("--fraction", axes.TrainingFractions?.Count), ("--r", axes.Ranks?.Count), ("--alpha", axes.Alphas?.Count), ("--dropout", axes.Dropouts?.Count),
                         ("--targets", axes.TargetModules?.Count), ("--epochs", axes.Epochs?.Count), ("--lr", axes.LearningRates?.Count) })
            {
                if (count > 1)
                {
                    throw new UsageException($"{name}: one value here; use the sweep verb to run several.");
                }
            }

            if (axes.Modes is not null)
            {
                throw new UsageException("--modes: this verb fine-tunes; use baseline for zero/few-shot or sweep --modes.");
            }
        }

        try
        {
            return axes.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }

    private static Option<string?> List(string name, string? alias, string description)
    {
        var o = alias is null ? new Option<string?>(name) : new Option<string?>(name, alias);
        o.Description = description + " A comma-separated list runs each value.";
        return o;
    }

    private static IReadOnlyList<T>? Parse<T>(ParseResult pr, Option<string?> option, Func<string, IFormatProvider, T> parse)
    {
        if (pr.GetValue(option) is not { } text)
        {
            return null;
        }

        try
        {
            return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v => parse(v, CultureInfo.InvariantCulture)).ToArray();
        }
        catch (FormatException)
        {
            throw new UsageException($"{option.Name} '{text}': expected comma-separated numbers, e.g. 0.1,0.5.");
        }
        catch (OverflowException)
        {
            throw new UsageException($"{option.Name} '{text}': a value is out of range.");
        }
    }

    private static IReadOnlyList<string> TargetSet(string text) => text == "all"
        ? LoraOptions.AllProjections
        : text.Split(['+', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static EvaluationMode Mode(string text)
    {
        if (text == "zero-shot")
        {
            return EvaluationMode.ZeroShot();
        }

        if (text == "fine-tuned")
        {
            return EvaluationMode.FineTuned();
        }

        if (text == "few-shot")
        {
            return EvaluationMode.FewShot(2, FewShotSelection.FirstPerLabel);
        }

        if (text.StartsWith("few-shot:", StringComparison.Ordinal) && int.TryParse(text["few-shot:".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int k) && k >= 1)
        {
            return EvaluationMode.FewShot(k, FewShotSelection.FirstPerLabel);
        }

        throw new UsageException($"--modes '{text}': expected zero-shot, few-shot, few-shot:K (K ≥ 1) or fine-tuned.");
    }

    private static int Positive(int value, string option) => value >= 1 ? value : throw new UsageException($"{option} must be at least 1; got {value}.");
}
