// The study's workflow on the embedded kit, in one command (CPU, a few minutes on 2 cores):
//   dotnet run --project samples/Mistral.Samples.Pipeline
// evaluates the kit's small pretrained Mistral zero-shot and few-shot (generate-and-parse and label likelihood) on a
// test sample of the kit's 20-way Debian-section classification, QLoRA-fine-tunes it on a training subset, evaluates
// again, and prints the comparison with the four pillars. (The kit model is tiny, so it gets the adaptation a tiny model
// needs: r 16 on all projections, completion-only training, lr 2e-3; the study's 7B recipe is q/v r 8 at 2e-4.) Your own checkpoint and files (text,label; JSONL/CSV/Parquet):
//   dotnet run --project samples/Mistral.Samples.Pipeline -- MODEL_DIR TRAIN_FILE TEST_FILE [TRAIN_COUNT TEST_COUNT]
using Microsoft.Extensions.Logging;
using Mistral.Eval.Data;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Mistral.Pipeline;

string model = args.Length > 0 ? args[0] : FindRepoPath("kit/model");
string trainFile = args.Length > 1 ? args[1] : FindRepoPath("kit/data/classification/train.parquet");
string testFile = args.Length > 2 ? args[2] : FindRepoPath("kit/data/classification/test.parquet");
// Sized for a 2-core CPU: 300 training examples (15 per label), 100 test examples (5 per label), descriptions clipped to
// 400 characters, 3 epochs of completion-only QLoRA.
int trainCount = args.Length > 3 ? int.Parse(args[3]) : 300;
int testCount = args.Length > 4 ? int.Parse(args[4]) : 100;
const int ClipCharacters = 400;
const int SummaryTrain = 150;
const int SummaryTest = 40;
const int Epochs = 3;
const double LearningRate = 2e-3;

// LoRA dropout draws from TorchSharp's default generator, which the library never seeds (process-wide state); this
// program owns its process, so it seeds it for a run that gives the same numbers every time.
TorchSharp.torch.manual_seed(42);
using ILoggerFactory logging = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
var reader = new DatasetReader();
var trainAll = (await reader.ReadAsync(trainFile, ColumnMapping.Classification, ReadOptions.StudyCleaning)).Examples;
var testAll = (await reader.ReadAsync(testFile, ColumnMapping.Classification, ReadOptions.StudyCleaning)).Examples;
// Stratified subsets, exactly as scikit-learn's train_test_split(stratify=…, random_state=42) would pick them.
var train = Clip(Subset(trainAll, trainCount), ClipCharacters);
var test = Clip(Subset(testAll, testCount), ClipCharacters);
Console.WriteLine($"model {model}; {train.Count} of {trainAll.Count} training and {test.Count} of {testAll.Count} test examples, {train.Select(e => e.Target).Distinct().Count()} labels; texts clipped to {ClipCharacters} characters");

var live = new Progress<PipelineProgress>(p => Console.Error.Write($"\r{p.Stage,-10} {p.Fraction,5:P0} {p.Message,-72}"));
var options = new EvaluationOptions { BatchSize = 8, Cost = new CostModel(1.212m) };   // an AWS g5.2xlarge hour, the study's machine
var builder = MistralPipeline.Create()
    .FromPretrained(model)
    .OnDevice("cpu")
    .WithQLoRA(r: 16, alpha: 32, dropout: 0.05, targetModules: LoraOptions.AllProjections)
    .ForClassification(labelColumn: "label")
    .WithSeed(42)
    .WithLogging(logging)
    .WithEvaluationOptions(options)
    .WithCompletionOnlyTraining(new SftCompletionOptions { MaxLength = 256 })
    .WithTrainingOptions(o => o with { GradientCheckpointing = false, Epochs = Epochs, LearningRate = LearningRate, LogEverySteps = 1 });

using TrainedPipeline tuned = await builder.TrainAsync(train, live);
Console.Error.WriteLine();
EvaluationReport zeroShot = await tuned.EvaluateAsync(test, EvaluationMode.ZeroShot(), options, live);
Console.Error.WriteLine();
EvaluationReport fewShot = await tuned.EvaluateAsync(test, EvaluationMode.FewShot(20, pool: train), options, live);
Console.Error.WriteLine();
EvaluationReport fineTuned = await tuned.EvaluateAsync(test, EvaluationMode.FineTuned(), options, live);
Console.Error.WriteLine();
Console.WriteLine();
Console.WriteLine(ComparisonTable.ToMarkdown(zeroShot, fewShot, fineTuned));
Console.WriteLine($"few-shot: {fewShot.Prompts.MeanFewShotExamples:0.#} of 20 examples fit the {fewShot.Prompts.ContextLength}-token context on average ({fewShot.Prompts.FewShotExamplesDropped} dropped, counted).");
Console.WriteLine($"training: {tuned.Training.Data}; {tuned.Training.StepsCompleted} steps in {tuned.Training.Elapsed.TotalSeconds:0.#} s; loss by epoch {string.Join(" → ", tuned.Training.EpochLosses.Select(l => l.ToString("0.###")))}");
string results = Path.Combine(Path.GetTempPath(), "mistral-quickstart");
zeroShot.Save(Path.Combine(results, "classification", "zero-shot"));
fewShot.Save(Path.Combine(results, "classification", "few-shot"));
fineTuned.Save(Path.Combine(results, "classification", "fine-tuned"));
tuned.SaveAdapter(Path.Combine(results, "classification", "adapter"));

if (args.Length == 0)
{
    // Summarization on the kit (long description → synopsis), as the study's Table 2: ROUGE of the three methods.
    var sumTrain = Clip((await reader.ReadAsync(FindRepoPath("kit/data/summarization/train.parquet"), ColumnMapping.Summarization, ReadOptions.StudyCleaning)).Examples.Take(SummaryTrain).ToArray(), ClipCharacters);
    var sumTest = Clip((await reader.ReadAsync(FindRepoPath("kit/data/summarization/test.parquet"), ColumnMapping.Summarization, ReadOptions.StudyCleaning)).Examples.Take(SummaryTest).ToArray(), ClipCharacters);
    Console.WriteLine();
    Console.WriteLine($"summarization: {sumTrain.Count} training and {sumTest.Count} test descriptions → synopses");
    using TrainedPipeline summarizer = await MistralPipeline.Create()
        .FromPretrained(model)
        .OnDevice("cpu")
        .WithQLoRA(r: 16, alpha: 32, dropout: 0.05, targetModules: LoraOptions.AllProjections)
        .ForSummarization()
        .WithSeed(42)
        .WithLogging(logging)
        .WithEvaluationOptions(options)
        .WithCompletionOnlyTraining(new SftCompletionOptions { MaxLength = 256 })
        .WithTrainingOptions(o => o with { GradientCheckpointing = false, Epochs = Epochs, LearningRate = LearningRate, LogEverySteps = 1 })
        .TrainAsync(sumTrain, live);
    Console.Error.WriteLine();
    var sumZero = await summarizer.EvaluateAsync(sumTest, EvaluationMode.ZeroShot(), options, live);
    var sumFew = await summarizer.EvaluateAsync(sumTest, EvaluationMode.FewShot(2, FewShotSelection.FirstK, pool: sumTrain), options, live);
    var sumFine = await summarizer.EvaluateAsync(sumTest, EvaluationMode.FineTuned(), options, live);
    Console.Error.WriteLine();
    Console.WriteLine(ComparisonTable.ToMarkdown(sumZero, sumFew, sumFine));
    Console.WriteLine($"an example: {sumTest[0].Input[..Math.Min(90, sumTest[0].Input.Length)]}…");
    Console.WriteLine($"  reference:  {sumTest[0].Target}");
    Console.WriteLine($"  zero-shot:  {sumZero.Predictions[0].Prediction}");
    Console.WriteLine($"  fine-tuned: {sumFine.Predictions[0].Prediction}");
    sumZero.Save(Path.Combine(results, "summarization", "zero-shot"));
    sumFew.Save(Path.Combine(results, "summarization", "few-shot"));
    sumFine.Save(Path.Combine(results, "summarization", "fine-tuned"));
}

Console.WriteLine($"reports, predictions and the adapter (PEFT format): {results}");
return 0;

static IReadOnlyList<Example> Clip(IReadOnlyList<Example> examples, int characters) =>
    characters <= 0 ? examples : examples.Select(e => e.Input.Length <= characters ? e : e with { Input = e.Input[..characters] }).ToArray();

static IReadOnlyList<Example> Subset(IReadOnlyList<Example> all, int count) =>
    count >= all.Count ? all : DataSplitter.StratifiedSubsample(all, e => e.Target, (double)count / all.Count).Train;

static string FindRepoPath(string relative)
{
    for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
    {
        string candidate = Path.Combine(dir, relative);
        if (File.Exists(candidate) || Directory.Exists(candidate))
        {
            return candidate;
        }
    }

    throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}; pass MODEL_DIR TRAIN_FILE TEST_FILE.");
}
