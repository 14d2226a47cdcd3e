using System.Diagnostics;
using System.Globalization;
using Mistral.Eval.Benchmarks;
using Mistral.Eval.Metrics;

// ROUGE throughput: rouge1, rouge2, rougeL, rougeLsum with stemming on synthetic summary pairs.
// Usage: dotnet run -c Release --project benchmarks/Mistral.Eval.Benchmarks -- [--pairs 10000] [--runs 5]
// Python side, same pairs: /usr/bin/python3 tools/eval_metrics/rouge_reference.py --bench
int pairsCount = 10000;
int runs = 5;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--pairs" when i + 1 < args.Length:
            pairsCount = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--runs" when i + 1 < args.Length:
            runs = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        default:
            Console.Error.WriteLine($"Unknown argument '{args[i]}'. Usage: [--pairs N] [--runs N]");
            return 2;
    }
}

if (pairsCount < 1 || runs < 1)
{
    Console.Error.WriteLine("--pairs and --runs must be at least 1.");
    return 2;
}

var pairs = SyntheticSummaries.Pairs(pairsCount);
string[] targets = pairs.Select(p => p.Target).ToArray();
string[] predictions = pairs.Select(p => p.Prediction).ToArray();
var options = new RougeOptions { RougeTypes = ["rouge1", "rouge2", "rougeL", "rougeLsum"], UseStemmer = true };

var times = new List<double>();
IReadOnlyList<IReadOnlyDictionary<string, RougeScore>> results = [];
for (int run = 0; run <= runs; run++)
{
    // A fresh scorer each run: its stem cache starts empty, as the Python side's does.
    var scorer = new RougeScorer(options);
    var watch = Stopwatch.StartNew();
    results = scorer.ScoreAll(targets, predictions);
    watch.Stop();
    if (run > 0)
    {
        times.Add(watch.Elapsed.TotalSeconds); // run 0 is the warm-up (JIT)
    }
}

double median = Median(times);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"Mistral.Eval RougeScorer: {pairsCount} pairs, median of {runs} runs: {median:F3} s ({pairsCount / median:F1} pairs/s); runs: {string.Join(", ", times.Select(t => t.ToString("F3", CultureInfo.InvariantCulture)))}"));
Console.WriteLine("mean F: " + string.Join(", ", options.RougeTypes.Select(type =>
    string.Create(CultureInfo.InvariantCulture, $"{type}={results.Average(r => r[type].FMeasure):F15}"))));
return 0;

static double Median(List<double> values)
{
    var sorted = values.Order().ToArray();
    int mid = sorted.Length / 2;
    return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
