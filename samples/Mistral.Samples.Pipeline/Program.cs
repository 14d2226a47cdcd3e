// The study's workflow in one chain: load a Hugging Face checkpoint folder, QLoRA-fine-tune it for classification,
// and compare zero-shot with fine-tuned on a test set (accuracy by the study's generate-and-parse rule and by label
// likelihood, with the four pillars).
//   dotnet run --project samples/Mistral.Samples.Pipeline                       (a small stand-in, see below)
//   dotnet run --project samples/Mistral.Samples.Pipeline -- MODEL_DIR TRAIN_FILE TEST_FILE   (JSONL/CSV/Parquet with text,label)
// Without arguments it writes a small random-weight Mistral (vocabulary: the repository's 1000-piece SentencePiece test
// model) and a synthetic 3-topic keyword task: what it shows is the workflow and that fine-tuning learns what prompting a
// model that was never trained cannot; it is not the study's numbers (those need Mistral-7B and 20 Newsgroups).
using Microsoft.Extensions.Logging;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Eval.Data;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Mistral.Pipeline;
using static TorchSharp.torch;

using ILoggerFactory logging = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
string folder;
IReadOnlyList<Example> trainExamples, testExamples;
bool standIn = args.Length < 3;
if (standIn)
{
    folder = StandIn.WriteCheckpoint(FindRepoFile("tests/fixtures/tokenizer/tiny-bpe.model"));
    trainExamples = StandIn.Examples(90, seed: 1);
    testExamples = StandIn.Examples(30, seed: 2);
    Console.WriteLine($"stand-in checkpoint {folder}; {trainExamples.Count} training and {testExamples.Count} test examples of a synthetic 3-topic task");
}
else
{
    folder = args[0];
    var reader = new DatasetReader();
    trainExamples = (await reader.ReadAsync(args[1], ColumnMapping.Classification, ReadOptions.StudyCleaning)).Examples;
    testExamples = (await reader.ReadAsync(args[2], ColumnMapping.Classification, ReadOptions.StudyCleaning)).Examples;
}

var live = new Progress<PipelineProgress>(p => Console.Write($"\r{p.Stage,-10} {p.Fraction,6:P0}  {p.Message,-70}"));
var builder = MistralPipeline.Create()
    .FromPretrained(folder)
    .WithQLoRA(r: 16)
    .ForClassification(labelColumn: "label")
    .WithSeed(7)
    .WithLogging(logging);
if (standIn)
{
    // A tiny model learns the task with more adaptation than the study's 7B recipe needs.
    builder = builder.WithQLoRA(r: 16, alpha: 32, dropout: 0, targetModules: LoraOptions.AllProjections)
        .WithPacking(new SftPackingOptions { SequenceLength = 64 })
        .WithTrainingOptions(o => o with { Epochs = 12, LearningRate = 1e-2, GradientAccumulationSteps = 1 });
}

using TrainedPipeline tuned = await builder.TrainAsync(trainExamples, live);
Console.WriteLine();
EvaluationReport zeroShot = tuned.Evaluate(testExamples, EvaluationMode.ZeroShot());
EvaluationReport report = tuned.Evaluate(testExamples);
Console.WriteLine(zeroShot.ToMarkdown());
Console.WriteLine(report.ToMarkdown());
tuned.SaveAdapter(Path.Combine(Path.GetTempPath(), "mistral-pipeline-sample-adapter"));
Console.WriteLine($"adapter saved (PEFT format) to {Path.Combine(Path.GetTempPath(), "mistral-pipeline-sample-adapter")}");
return 0;

static string FindRepoFile(string relative)
{
    for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
    {
        string candidate = Path.Combine(dir, relative);
        if (File.Exists(candidate))
        {
            return candidate;
        }
    }

    throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}");
}

/// <summary>The no-argument stand-in: a small random Mistral saved as an HF folder, and a keyword task.</summary>
internal static class StandIn
{
    private static readonly string[] Labels = ["sport", "food", "music"];
    private static readonly string[][] Words =
    [
        ["football", "match", "goal", "team", "players", "stadium", "coach", "league"],
        ["pizza", "bread", "soup", "kitchen", "recipe", "cheese", "dinner", "salad"],
        ["guitar", "song", "concert", "band", "piano", "album", "singer", "drums"],
    ];

    private static readonly string[] Fillers = ["the", "a", "we", "saw", "great", "new", "with", "and", "today", "about"];

    public static string WriteCheckpoint(string tokenizerModel)
    {
        string folder = Path.Combine(Path.GetTempPath(), "mistral-pipeline-sample-model");
        Directory.CreateDirectory(folder);
        var config = new MistralConfig
        {
            VocabSize = 1000, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
            HeadDim = 16, SlidingWindow = 512, MaxPositionEmbeddings = 1024, TorchDtype = "float32",
        };
        using (var model = new MistralForCausalLM(config, ScalarType.Float32, CPU))
        using (var gen = new Generator(1234))
        {
            using (no_grad())
            {
                foreach (var (name, p) in model.named_parameters())
                {
                    if (name.Contains("norm"))
                    {
                        p.fill_(1.0f);
                    }
                    else
                    {
                        p.copy_(0.05f * randn(p.shape, ScalarType.Float32, generator: gen));
                    }
                }
            }

            CheckpointLoader.Save(model, folder);
        }

        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
        File.Copy(tokenizerModel, Path.Combine(folder, "tokenizer.model"), overwrite: true);
        return folder;
    }

    public static IReadOnlyList<Example> Examples(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(i =>
        {
            int label = i % Labels.Length;
            var words = Enumerable.Range(0, 5).Select(w => w % 2 == 0 ? Words[label][rng.Next(Words[label].Length)] : Fillers[rng.Next(Fillers.Length)]);
            return new Example(string.Join(' ', words), Labels[label]);
        }).ToArray();
    }
}
