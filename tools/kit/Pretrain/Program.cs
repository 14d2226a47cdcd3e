// Pretrains the kit's small Mistral from scratch with Mistral.NET's own trainer (CausalLMTrainer, all parameters),
// then writes a Hugging Face checkpoint folder. Seeded and deterministic up to the device's kernels.
//
//   pretrain --corpus kit/corpus/train.jsonl --tokenizer kit/model/tokenizer.model
//            --validation kit/data/summarization/validation.parquet --out DIR [--device cuda] [--epochs 6] ...
//   logits   --model kit/model --out FILE [--device cpu]      our float32 logits for fixed prompts (tools/kit/hf_check.py)
//   plot     --log kit/model/training_log.csv --summary kit/model/pretrain.json --out kit/model/training_loss.png
//
// The corpus is tools/kit/build_debian_kit.py --corpus output: the descriptions of the train split's source packages
// only (validation and test sources excluded). Held-out perplexity is measured on the summarization validation split
// (synopsis + newline + long description, the corpus's format), on the saved bf16 weights.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using Mistral.Eval.Data;
using Mistral.Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
string verb = args.Length > 0 ? args[0] : "help";
var opt = Options.Parse(args.Skip(1).ToArray());
Device device = opt.Get("device", "cpu") == "cuda" ? InitCuda() : CPU;
return verb switch
{
    "pretrain" => await Pretrain.RunAsync(opt, device),
    "logits" => KitLogits.Run(opt, device),
    "plot" => LossPlot.Run(opt),
    _ => Usage(),
};

static int Usage()
{
    Console.WriteLine("usage: Mistral.Kit.Pretrain pretrain --corpus FILE --tokenizer FILE --validation FILE --out DIR [--device cuda] | logits --model DIR --out FILE");
    return 2;
}

static Device InitCuda()
{
    InitializeDeviceType(DeviceType.CUDA);
    return CUDA;
}

internal sealed class Options(Dictionary<string, string> values)
{
    public static Options Parse(string[] args)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new ArgumentException($"Expected '--name value' pairs; got '{args[i]}'.");
            }

            d[args[i][2..]] = args[++i];
        }

        return new Options(d);
    }

    public string Get(string name, string fallback) => values.TryGetValue(name, out var v) ? v : fallback;

    public string Require(string name) => values.TryGetValue(name, out var v) ? v : throw new ArgumentException($"--{name} is required.");

    public int Int(string name, int fallback) => values.TryGetValue(name, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

    public double Double(string name, double fallback) => values.TryGetValue(name, out var v) ? double.Parse(v, CultureInfo.InvariantCulture) : fallback;
}

internal static class Pretrain
{
    public static async Task<int> RunAsync(Options opt, Device device)
    {
        string outDir = opt.Require("out");
        var tokenizer = MistralTokenizer.FromFile(opt.Require("tokenizer"));
        long seed = opt.Int("seed", 1);
        int seq = opt.Int("seq", 1024);
        var config = new MistralConfig
        {
            VocabSize = tokenizer.VocabSize,
            HiddenSize = opt.Int("hidden", 256),
            IntermediateSize = opt.Int("intermediate", 768),
            NumHiddenLayers = opt.Int("layers", 8),
            NumAttentionHeads = opt.Int("heads", 4),
            NumKeyValueHeads = opt.Int("kv-heads", 2),
            HeadDim = opt.Int("head-dim", 64),
            SlidingWindow = opt.Int("window", 512),
            MaxPositionEmbeddings = opt.Int("max-positions", 1024),
            RmsNormEps = 1e-5,
            RopeTheta = 10000,
            BosTokenId = tokenizer.BosId,
            EosTokenId = tokenizer.EosId,
            TorchDtype = "bfloat16",
        };
        config.Validate();

        using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; }));
        var log = loggers.CreateLogger("pretrain");
        string corpus = opt.Require("corpus");
        var texts = File.ReadLines(corpus).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!["text"]!.GetValue<string>()).ToList();
        var packing = new SftPackingOptions { SequenceLength = seq, BosId = tokenizer.BosId, EosId = tokenizer.EosId };
        PackedDataset data = new SftPacker(packing).Pack(texts, tokenizer);
        log.LogInformation("corpus {Corpus}: {Docs} documents; {Data}", corpus, texts.Count, data.Describe());

        var validation = await new DatasetReader().ReadAsync(opt.Require("validation"), ColumnMapping.Summarization, ReadOptions.StudyCleaning);
        PackedDataset heldOut = new SftPacker(packing).Pack(validation.Examples.Select(e => e.Target + "\n" + e.Input), tokenizer);
        log.LogInformation("held-out: {Rows} validation descriptions; {Data}", validation.Examples.Count, heldOut.Describe());

        using var model = new MistralForCausalLM(config, ScalarType.Float32, device);
        Initialize(model, seed, config);
        long parameters = model.parameters().Sum(p => p.numel());
        var options = new TrainingOptions
        {
            Epochs = opt.Int("epochs", 6),
            PerDeviceBatchSize = opt.Int("batch", 16),
            GradientAccumulationSteps = 1,
            LearningRate = opt.Double("lr", 2e-3),
            Schedule = LearningRateSchedule.Cosine,
            WarmupRatio = opt.Double("warmup", 0.03),
            MaxGradNorm = 1.0,
            AdamBeta1 = 0.9,
            AdamBeta2 = 0.95,
            WeightDecay = 0.1,
            GradientCheckpointing = false,
            Seed = seed,
            LogEverySteps = 50,
        };
        double before = HeldOutLoss(model, heldOut);
        log.LogInformation("{Parameters:N0} parameters; held-out loss before training {Loss:F4}", parameters, before);
        var clock = Stopwatch.StartNew();
        TrainingResult result = new CausalLMTrainer(loggers.CreateLogger<CausalLMTrainer>()).Train(model, TrainableSelection.All, data, options);
        clock.Stop();

        // Save in bf16 (what the kit ships), reload it, and measure held-out perplexity on exactly those weights.
        Directory.CreateDirectory(outDir);
        using (var bf16 = new MistralForCausalLM(config, ScalarType.BFloat16, CPU))
        {
            using (no_grad())
            {
                var source = model.state_dict();
                foreach (var (name, t) in bf16.state_dict())
                {
                    t.copy_(source[name].to(ScalarType.BFloat16).cpu());
                }
            }

            CheckpointLoader.Save(bf16, outDir);
        }

        File.WriteAllText(Path.Combine(outDir, "config.json"), config.ToJson());
        File.WriteAllText(Path.Combine(outDir, "generation_config.json"),
            $"{{\n  \"bos_token_id\": {config.BosTokenId},\n  \"eos_token_id\": {config.EosTokenId},\n  \"max_length\": {config.MaxPositionEmbeddings}\n}}\n");
        File.Copy(opt.Require("tokenizer"), Path.Combine(outDir, "tokenizer.model"), overwrite: true);

        using var saved = new MistralForCausalLM(config, ScalarType.Float32, device);
        CheckpointLoader.Load(saved, outDir);
        saved.eval();
        double heldOutLoss = HeldOutLoss(saved, heldOut);
        var csv = new StringBuilder("step,epoch,learning_rate,loss,grad_norm,tokens\n");
        foreach (var s in result.Steps)
        {
            csv.Append(CultureInfo.InvariantCulture, $"{s.Step},{s.Epoch},{s.LearningRate:G6},{s.Loss:F5},{s.GradNorm:F4},{s.Tokens}\n");
        }

        File.WriteAllText(Path.Combine(outDir, "training_log.csv"), csv.ToString());
        string samples = Samples(saved, tokenizer);
        File.WriteAllText(Path.Combine(outDir, "samples.txt"), samples);
        var summary = new JsonObject
        {
            ["parameters"] = parameters,
            ["corpus_documents"] = texts.Count,
            ["training_tokens_per_epoch"] = data.TokenCount,
            ["epochs"] = options.Epochs,
            ["steps"] = result.Steps.Count,
            ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
            ["tokens_per_second"] = Math.Round(result.TokensPerSecond),
            ["device"] = device.ToString(),
            ["gpu"] = Environment.GetEnvironmentVariable("KIT_GPU_NAME") ?? "",
            ["seed"] = seed,
            ["first_epoch_loss"] = Math.Round(result.EpochLosses[0], 4),
            ["last_epoch_loss"] = Math.Round(result.EpochLosses[^1], 4),
            ["held_out_documents"] = validation.Examples.Count,
            ["held_out_tokens"] = heldOut.TokenCount,
            ["held_out_loss_untrained"] = Math.Round(before, 4),
            ["held_out_loss"] = Math.Round(heldOutLoss, 4),
            ["held_out_perplexity"] = Math.Round(Math.Exp(heldOutLoss), 2),
            ["options"] = JsonSerializer.SerializeToNode(options, new JsonSerializerOptions { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } }),
        };
        File.WriteAllText(Path.Combine(outDir, "pretrain.json"), summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine(summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine(samples);
        return 0;
    }

    /// <summary>Hugging Face's initialisation for Mistral: every Linear and Embedding N(0, 0.02), RMSNorm weights 1; drawn on the CPU from a seeded generator.</summary>
    private static void Initialize(MistralForCausalLM model, long seed, MistralConfig config)
    {
        using var gen = new Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal))
            {
                p.fill_(1.0);
            }
            else
            {
                using var values = normal(0, 0.02, p.shape, ScalarType.Float32, generator: gen);
                p.copy_(values);
            }
        }

        _ = config;
    }

    /// <summary>Mean token loss over the held-out blocks (batches of 8, eval mode, no grad).</summary>
    public static double HeldOutLoss(MistralForCausalLM model, PackedDataset data)
    {
        bool was = model.training;
        model.eval();
        using var noGrad = inference_mode();
        double sum = 0;
        long count = 0;
        foreach (var chunk in Enumerable.Range(0, data.Count).Chunk(8))
        {
            using var scope = NewDisposeScope();
            var ids = chunk.SelectMany(i => data.Blocks[i]).Select(x => (long)x).ToArray();
            var input = tensor(ids, [chunk.Length, data.SequenceLength], ScalarType.Int64, model.Device);
            using var output = model.forward(new CausalLMInput(input) { Labels = input, LossOnly = true });
            long tokens = chunk.Length * (long)(data.SequenceLength - 1);
            sum += output.Loss!.item<float>() * tokens;
            count += tokens;
        }

        model.train(was);
        return sum / count;
    }

    private static string Samples(MistralForCausalLM model, MistralTokenizer tokenizer)
    {
        var generator = new TextGenerator(model, tokenizer);
        var sb = new StringBuilder();
        string[] prompts = ["Python library for", "Command-line tool to", "This package contains the documentation", "GNOME", "Rust crate"];
        foreach (string prompt in prompts)
        {
            var greedy = generator.Generate(prompt, GenerationOptions.Greedy with { MaxNewTokens = 48 }).Sequences[0].Text;
            var sampled = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 48, DoSample = true, TopP = 0.9, Temperature = 0.8, Seed = 7 }).Sequences[0].Text;
            sb.Append(CultureInfo.InvariantCulture, $"### {prompt}\n[greedy] {prompt}{greedy}\n[top-p 0.9, T 0.8, seed 7] {prompt}{sampled}\n\n");
        }

        return sb.ToString();
    }
}

internal static class KitLogits
{
    /// <summary>Our float32 logits of the kit checkpoint for fixed prompts (a left-padded batch), for tools/kit/hf_check.py.</summary>
    public static int Run(Options opt, Device device)
    {
        string folder = opt.Require("model");
        var tokenizer = MistralTokenizer.FromFolder(folder);
        using var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(folder, "config.json")), ScalarType.Float32, device);
        CheckpointLoader.Load(model, folder);
        model.eval();
        string[] prompts =
        [
            "Python library for parsing configuration files",
            "### Sentence:A command-line tool to convert images between formats. ### Class:",
            "Summarize the following dialogue that is delimited with triple backticks.\n\n### Dialogue: ```Shared library for the GNU C compiler```\n### Summary:\n",
        ];
        var encoded = prompts.Select(p => tokenizer.Encode(p)).ToArray();
        int length = encoded.Max(e => e.Length);
        var ids = new long[prompts.Length * length];
        var mask = new long[prompts.Length * length];
        for (int r = 0; r < prompts.Length; r++)
        {
            int pad = length - encoded[r].Length;
            for (int c = 0; c < length; c++)
            {
                ids[(r * length) + c] = c < pad ? tokenizer.EosId : encoded[r][c - pad];
                mask[(r * length) + c] = c < pad ? 0 : 1;
            }
        }

        using var noGrad = inference_mode();
        using var input = tensor(ids, [prompts.Length, length], ScalarType.Int64, device);
        using var attention = tensor(mask, [prompts.Length, length], ScalarType.Int64, device);
        using var output = model.forward(new CausalLMInput(input) { AttentionMask = attention });
        SafeTensorsWriter.Write(opt.Require("out"), new Dictionary<string, Tensor>
        {
            ["ids"] = input.cpu(), ["mask"] = attention.cpu(), ["logits"] = output.Logits.cpu(),
        });
        Console.WriteLine($"wrote {opt.Require("out")}: logits [{string.Join(", ", output.Logits.shape)}]");
        return 0;
    }
}

internal static class LossPlot
{
    /// <summary>The pretraining loss curve (every step, and each epoch's mean) with the held-out loss as a reference line.</summary>
    public static int Run(Options opt)
    {
        var rows = File.ReadLines(opt.Require("log")).Skip(1).Select(l => l.Split(',')).ToArray();
        double[] steps = rows.Select(r => double.Parse(r[0], CultureInfo.InvariantCulture)).ToArray();
        double[] loss = rows.Select(r => double.Parse(r[3], CultureInfo.InvariantCulture)).ToArray();
        int[] epochs = rows.Select(r => int.Parse(r[1], CultureInfo.InvariantCulture)).ToArray();
        var plot = new ScottPlot.Plot();
        var perStep = plot.Add.Scatter(steps, loss);
        perStep.LineWidth = 1;
        perStep.MarkerSize = 0;
        perStep.LegendText = "training loss per step";
        var epochEnds = epochs.Distinct().Select(e => (Step: steps.Where((_, i) => epochs[i] == e).Max(), Mean: loss.Where((_, i) => epochs[i] == e).Average())).ToArray();
        var means = plot.Add.Scatter(epochEnds.Select(x => x.Step).ToArray(), epochEnds.Select(x => x.Mean).ToArray());
        means.LineWidth = 2;
        means.MarkerSize = 7;
        means.LegendText = "epoch mean";
        var summary = JsonNode.Parse(File.ReadAllText(opt.Require("summary")))!;
        double heldOut = summary["held_out_loss"]!.GetValue<double>();
        var line = plot.Add.HorizontalLine(heldOut);
        line.LinePattern = ScottPlot.LinePattern.Dashed;
        line.LegendText = string.Create(CultureInfo.InvariantCulture, $"held-out loss after training {heldOut:0.###} (perplexity {Math.Exp(heldOut):0.#})");
        plot.Title(string.Create(CultureInfo.InvariantCulture, $"kit/model pretraining: {summary["parameters"]!.GetValue<long>():N0} parameters, {steps.Length:N0} steps"));
        plot.XLabel("optimizer step");
        plot.YLabel("cross-entropy loss");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        plot.SavePng(opt.Require("out"), 900, 520);
        Console.WriteLine($"wrote {opt.Require("out")}");
        return 0;
    }
}
