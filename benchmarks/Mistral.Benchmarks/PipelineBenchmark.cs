using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using Mistral.Eval.Data;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Mistral.Pipeline;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>
/// The study's workflow through <see cref="MistralPipeline"/> on a real checkpoint folder (the 7B architecture with random
/// weights on the GPU machine): one QLoRA epoch on a few hundred synthetic 20-label examples, a fine-tuned and a zero-shot
/// evaluation with the four pillars, then the same training run through the parts directly (SftPacker + LoraTrainer on
/// the pipeline's own model) to show the pipeline adds no overhead.
/// </summary>
internal static class PipelineBenchmark
{
    private static readonly string[] Newsgroups =
    [
        "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware", "comp.windows.x",
        "misc.forsale", "rec.autos", "rec.motorcycles", "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
        "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast", "talk.politics.misc", "talk.religion.misc",
    ];

    private static readonly string[] Words =
    [
        "the", "system", "question", "because", "people", "would", "should", "engine", "game", "season", "drive", "memory", "card",
        "window", "server", "image", "file", "program", "version", "article", "writes", "believe", "government", "rights", "space",
        "orbit", "launch", "doctor", "patient", "key", "encryption", "chip", "sale", "price", "offer", "bike", "car", "team", "player",
        "church", "faith", "evidence", "israel", "policy", "law", "power", "signal", "circuit", "monitor", "software", "display",
    ];

    public static IReadOnlyList<Example> Examples(int count, int seed, int words)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(i =>
        {
            string label = Newsgroups[i % Newsgroups.Length];
            var text = string.Join(' ', Enumerable.Range(0, words).Select(_ => Words[rng.Next(Words.Length)]));
            return new Example($"{label.Split('.')[^1]} {text}", label);
        }).ToArray();
    }

    public static int Run(Args opts, Device device)
    {
        string checkpoint = opts.Get("checkpoint", "");
        if (checkpoint.Length == 0)
        {
            Console.WriteLine("pipeline needs --checkpoint DIR (an HF folder with tokenizer.model)");
            return 2;
        }

        int trainCount = opts.GetInt("train", 400);
        int testCount = opts.GetInt("test", 64);
        int zeroCount = opts.GetInt("zero", 16);
        int r = opts.GetInt("r", 16);
        bool all = opts.Get("targets", "all") == "all";
        var train = Examples(trainCount, 1, opts.GetInt("words", 90));
        var test = Examples(testCount, 2, opts.GetInt("words", 90));
        using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; }).SetMinimumLevel(LogLevel.Information));
        var clock = Stopwatch.StartNew();
        using TrainedPipeline tuned = MistralPipeline.Create()
            .FromPretrained(checkpoint, baseModelName: "mistral-7b-architecture-random")
            .OnDevice(device)
            .WithQLoRA(r: r, targetModules: all ? LoraOptions.AllProjections : null)
            .ForClassification()
            .WithSeed(42)
            .WithLogging(loggers)
            .WithTrainingOptions(o => o with { Epochs = 1, LogEverySteps = 5 })
            .WithEvaluationOptions(new EvaluationOptions { BatchSize = 8, Cost = new CostModel(opts.Get("price", "2.50") is var p ? decimal.Parse(p, CultureInfo.InvariantCulture) : 2.5m) })
            .Train(train);
        double totalTrainSeconds = clock.Elapsed.TotalSeconds;
        var summary = tuned.Training;
        Console.WriteLine($"pipeline Train(): {totalTrainSeconds:F1} s including load; training {summary.Elapsed.TotalSeconds:F1} s, {summary.StepsCompleted} steps, {summary.TokensPerSecond:F0} tokens/s; {summary.Data}");

        var fine = tuned.Evaluate(test);
        Console.WriteLine(fine.ToMarkdown());
        var zero = tuned.Evaluate(test.Take(zeroCount).ToArray(), EvaluationMode.ZeroShot());
        Console.WriteLine(zero.ToMarkdown());

        // The same run through the parts, on the pipeline's own model and adapter (continues training it).
        var options = summary.Options with { CheckpointFolder = null, Seed = 43 };
        var packed = new SftPacker(SftPackingOptions.Study with { BosId = tuned.Tokenizer.BosId, EosId = tuned.Tokenizer.EosId })
            .Pack(train.Select(e => tuned.Task!.TrainingExample(e).Text), tuned.Tokenizer);
        var direct = new LoraTrainer(loggers.CreateLogger<LoraTrainer>()).Train(tuned.Model, tuned.Lora!, packed, options);
        double pipelineMedian = MedianTokensPerSecond(summary.Steps);
        double directMedian = MedianTokensPerSecond(direct.Steps);
        string device0 = device.type == DeviceType.CUDA ? "cuda" : "cpu";
        Console.WriteLine();
        Console.WriteLine("| path | steps | tokens/s (whole run) | tokens/s (median step, after 2) |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| pipeline Train() | {summary.StepsCompleted} | {summary.TokensPerSecond:F0} | {pipelineMedian:F0} |");
        Console.WriteLine($"| SftPacker + LoraTrainer directly | {direct.Steps.Count} | {direct.TokensPerSecond:F0} | {directMedian:F0} |");
        Console.WriteLine($"| ratio pipeline / direct | | {summary.TokensPerSecond / direct.TokensPerSecond:F3} | {pipelineMedian / directMedian:F3} |");
        Console.WriteLine($"device {device0}; training peak memory {summary.PeakMemoryBytes / (1024.0 * 1024 * 1024):F2} GiB ({summary.MemoryKind})");

        string merged = opts.Get("merged", "");
        if (merged.Length > 0)
        {
            var exportClock = Stopwatch.StartNew();
            tuned.SaveMerged(merged, new MergedExportOptions { Overwrite = true });
            Console.WriteLine($"merged checkpoint written to {merged} in {exportClock.Elapsed.TotalSeconds:F1} s");
            WriteMergedLogits(merged, tuned.Tokenizer, device, opts.Get("out", merged));
        }

        return 0;
    }

    /// <summary>
    /// A tiny model through the pipeline (LoRA on all projections, a few steps so B is non-zero), exported merged in float32
    /// for tools/merged_check.py to load with transformers: writes DIR/base, DIR/merged, and our logits of the merged folder
    /// and of the adapted model for fixed ids.
    /// </summary>
    public static int MergedCheck(Args opts, Device device)
    {
        string dir = opts.Get("out", "merged-check");
        string tokenizerModel = opts.Get("tokenizer", "tests/fixtures/tokenizer/tiny-bpe.model");
        string baseDir = Path.Combine(dir, "base");
        Directory.CreateDirectory(baseDir);
        var config = new MistralConfig
        {
            VocabSize = 1000, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
            HeadDim = 16, SlidingWindow = 512, MaxPositionEmbeddings = 1024, TorchDtype = "float32",
        };
        using (var model = RandomWeights.Model(config, ScalarType.Float32, CPU))
        {
            CheckpointLoader.Save(model, baseDir);
        }

        File.WriteAllText(Path.Combine(baseDir, "config.json"), config.ToJson());
        File.Copy(tokenizerModel, Path.Combine(baseDir, "tokenizer.model"), overwrite: true);
        foreach (bool quantized in new[] { false, true })
        {
            var builder = MistralPipeline.Create().FromPretrained(baseDir).OnDevice(device).WithDType(ScalarType.Float32).WithSeed(5).ForClassification()
                .WithPacking(new SftPackingOptions { SequenceLength = 32 })
                .WithTrainingOptions(o => o with { Epochs = 2, LearningRate = 5e-3, GradientAccumulationSteps = 1 });
            builder = quantized ? builder.WithQLoRA(r: 4, targetModules: LoraOptions.AllProjections) : builder.WithLoRA(r: 4, targetModules: LoraOptions.AllProjections);
            using var tuned = builder.Train(Examples(40, 3, 12));
            string name = quantized ? "merged-qlora" : "merged-lora";
            string merged = Path.Combine(dir, name);
            tuned.SaveMerged(merged, new MergedExportOptions { DType = ScalarType.Float32, MaxShardBytes = 300_000, Overwrite = true });
            using var ids = tensor(Enumerable.Range(0, 24).Select(i => (long)((i * 37) % 997 + 3)).ToArray(), [2, 12], ScalarType.Int64, device);
            using var noGrad = inference_mode();
            using var adapted = tuned.Model.forward(new CausalLMInput(ids));
            using var reloaded = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(merged, "config.json")), ScalarType.Float32, device);
            CheckpointLoader.Load(reloaded, merged);
            reloaded.eval();
            using var ours = reloaded.forward(new CausalLMInput(ids));
            SafeTensorsWriter.Write(Path.Combine(dir, name + ".logits.safetensors"), new Dictionary<string, Tensor>
            {
                ["ids"] = ids.cpu(), ["adapted"] = adapted.Logits.cpu(), ["merged_ours"] = ours.Logits.cpu(),
            });
            float diff = (adapted.Logits - ours.Logits).abs().max().item<float>();
            Console.WriteLine($"{name}: {Directory.GetFiles(merged).Length} files; our merged-load vs adapted logits max |Δ| {diff:E2}");
        }

        return 0;
    }

    private static void WriteMergedLogits(string merged, MistralTokenizer tokenizer, Device device, string outDir)
    {
        using var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(merged, "config.json")), ScalarType.BFloat16, device);
        CheckpointLoader.Load(model, merged);
        model.eval();
        int[] ids = tokenizer.Encode("### Sentence:hockey the game season team ### Class:");
        using var input = tensor(ids.Select(x => (long)x).ToArray(), [1, ids.Length], ScalarType.Int64, device);
        using var noGrad = inference_mode();
        using var output = model.forward(new CausalLMInput(input));
        Directory.CreateDirectory(outDir);
        SafeTensorsWriter.Write(Path.Combine(outDir, "merged7b.logits.safetensors"), new Dictionary<string, Tensor>
        {
            ["ids"] = input.cpu(), ["merged_ours"] = output.Logits.cpu(),
        });
    }

    private static double MedianTokensPerSecond(IReadOnlyList<TrainingStep> steps)
    {
        var rates = steps.Skip(2).Select(s => s.Tokens / s.Elapsed.TotalSeconds).OrderBy(x => x).ToArray();
        return rates.Length == 0 ? 0 : rates[rates.Length / 2];
    }
}
