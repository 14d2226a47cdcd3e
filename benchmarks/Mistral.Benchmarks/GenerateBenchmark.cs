using System.Diagnostics;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>Greedy generation speed: prefill time and decode tokens/s, median of several runs after a warm-up.</summary>
internal static class GenerateBenchmark
{
    public static int Run(Args opts, Device device)
    {
        string which = opts.Get("model", device.type == DeviceType.CUDA ? "7b" : "tiny");
        MistralConfig config = which == "7b"
            ? MistralConfig.Mistral7B
            : new MistralConfig { VocabSize = 32000, HiddenSize = 256, IntermediateSize = 688, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 2, HeadDim = 32, SlidingWindow = 4096 };
        ScalarType dtype = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
        int promptLength = opts.GetInt("prompt", 128);
        int newTokens = opts.GetInt("new", 128);
        int runs = opts.GetInt("runs", 3);
        var clock = Stopwatch.StartNew();
        using var model = RandomWeights.Model(config, dtype, device);
        model.eval();
        Console.WriteLine($"model {which} {dtype} built and initialised in {clock.Elapsed.TotalSeconds:F1} s");
        var generator = new TokenGenerator(model);
        var rows = new List<string>();
        foreach (int batch in opts.GetInts("batch", 1, 8))
        {
            var rng = new Random(7);
            int[][] prompts = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, promptLength).Select(_ => rng.Next(3, config.VocabSize)).ToArray()).ToArray();
            var options = GenerationOptions.Greedy with { MaxNewTokens = newTokens };
            generator.Generate(prompts, options with { MaxNewTokens = 8 }); // warm-up
            var results = new List<(double Total, GenerationTiming Timing)>();
            for (int r = 0; r < runs; r++)
            {
                var sw = Stopwatch.StartNew();
                GenerationResult res = generator.Generate(prompts, options);
                results.Add((sw.Elapsed.TotalSeconds, res.Timing));
            }

            var median = results.OrderBy(x => x.Total).ElementAt(results.Count / 2);
            double totalTokensPerSecond = batch * newTokens / median.Total;
            rows.Add($"mistral.net {which} {dtype} batch {batch}: prompt {promptLength} new {newTokens}: {median.Total:F2} s total, prefill {median.Timing.PrefillMilliseconds:F1} ms, decode {median.Timing.DecodeTokensPerSecond:F1} tok/s, end-to-end {totalTokensPerSecond:F1} tok/s (median of {runs})");
        }

        Console.WriteLine("== generate ==");
        rows.ForEach(Console.WriteLine);
        return 0;
    }
}
