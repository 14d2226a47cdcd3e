using System.Diagnostics;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>Greedy generation speed: prefill time and decode tokens/s, median of several runs after a warm-up.</summary>
internal static class GenerateBenchmark
{
    public static int Run(Args opts, Device device)
    {
        string which = opts.Get("model", device.type == DeviceType.CUDA ? "7b" : "tiny");
        MistralConfig config = which switch
        {
            "7b" => MistralConfig.Mistral7B,
            // The 7B layer structure (32 layers, 32/8 heads) with tiny widths: its time per token is the host's launch
            // overhead, since the GPU work is negligible.
            "thin" => MistralConfig.Mistral7B with { HiddenSize = 256, IntermediateSize = 512, HeadDim = 8 },
            _ => new MistralConfig { VocabSize = 32000, HiddenSize = 256, IntermediateSize = 688, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 2, HeadDim = 32, SlidingWindow = 4096 },
        };
        ScalarType dtype = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
        int promptLength = opts.GetInt("prompt", 128);
        int newTokens = opts.GetInt("new", 128);
        int runs = opts.GetInt("runs", 3);
        var clock = Stopwatch.StartNew();
        bool nf4 = opts.Get("quant", "none") == "nf4";
        // --checkpoint DIR with --quant nf4: loaded through QuantizedModelLoader as a user loads it (the embedding table in
        // pinned host memory unless --host-embeddings false); otherwise random weights quantized in place.
        string checkpoint = opts.Get("checkpoint", "");
        using var model = nf4 && checkpoint.Length > 0
            ? QuantizedModelLoader.Load(checkpoint, new QuantizedLoadOptions { Device = device, DType = dtype, EmbeddingsOnHost = opts.Get("host-embeddings", "true") == "true" }).Model
            : nf4 ? TrainStepBenchmark.RandomModel(config, dtype, device, qlora: true) : RandomWeights.Model(config, dtype, device);
        config = model.Config;
        model.eval();
        string fusedOption = opts.Get("fused", "true");
        bool[] fusedSettings = fusedOption == "both" ? [false, true] : [fusedOption == "true"];
        double peakGBs = double.Parse(opts.Get("peak-gbs", "3350"), System.Globalization.CultureInfo.InvariantCulture);
        // Bytes a decode step must read at least once: every decoder weight (4-bit codes and scales for NF4) and the lm_head.
        double weightBytes = WeightBytes(model);
        which += nf4 ? " nf4" : string.Empty;

        Console.WriteLine($"model {which} {dtype} built and initialised in {clock.Elapsed.TotalSeconds:F1} s");
        var generator = new TokenGenerator(model);
        var rows = new List<string>();
        string modelName = which;
        foreach (bool fusedSetting in fusedSettings)
        foreach (int batch in opts.GetInts("batch", 1, 8))
        {
            model.UseFusedKernels = fusedSetting;
            model.UseFusedAttention = fusedSetting && opts.Get("fused-attention", "false") == "true";
            model.UseFusedDecodeAttention = fusedSetting && opts.Get("fused-decode-attention", "true") == "true";
            model.UseFusedDecodeProjections = fusedSetting && opts.Get("fused-decode-gemv", "true") == "true";
            which = modelName + (fusedSetting ? " fused" + (model.UseFusedDecodeAttention ? "+decode-attention" : string.Empty)
                + (model.UseFusedDecodeProjections ? "+decode-gemv" : string.Empty) : " unfused");
            var rng = new Random(7);
            int[][] prompts = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, promptLength).Select(_ => rng.Next(3, config.VocabSize)).ToArray()).ToArray();
            var options = GenerationOptions.Greedy with { MaxNewTokens = newTokens };
            int warmup = opts.GetInt("warmup", 8);
            if (warmup > 0)
            {
                generator.Generate(prompts, options with { MaxNewTokens = warmup });
            }

            var results = new List<(double Total, GenerationTiming Timing)>();
            for (int r = 0; r < runs; r++)
            {
                var sw = Stopwatch.StartNew();
                GenerationResult res = generator.Generate(prompts, options);
                results.Add((sw.Elapsed.TotalSeconds, res.Timing));
            }

            if (opts.Get("profile", "false") == "true" && device.type == DeviceType.CUDA && KernelProfiler.TryInitialize())
            {
                // One more generation under CUPTI: which kernels a prefill + decode run launches, and how busy the device is.
                cuda.synchronize(device);
                KernelProfiler.Start();
                var sw = Stopwatch.StartNew();
                generator.Generate(prompts, options);
                cuda.synchronize(device);
                double wall = sw.Elapsed.TotalSeconds;
                KernelProfiler.Stop();
                KernelProfiler.Print($"{which} batch {batch}, prompt {promptLength} + {newTokens} new tokens, per decode step", newTokens, wall);
            }

            var median = results.OrderBy(x => x.Total).ElementAt(results.Count / 2);
            double totalTokensPerSecond = batch * newTokens / median.Total;
            double stepsPerSecond = median.Timing.DecodeTokensPerSecond / batch;
            double gbs = weightBytes * stepsPerSecond / 1e9;
            rows.Add($"mistral.net {which} {dtype} batch {batch}: prompt {promptLength} new {newTokens}: {median.Total:F2} s total, prefill {median.Timing.PrefillMilliseconds:F1} ms, decode {median.Timing.DecodeTokensPerSecond:F1} tok/s, end-to-end {totalTokensPerSecond:F1} tok/s (median of {runs}); weights read at {gbs:F0} GB/s = {100 * gbs / peakGBs:F0}% of {peakGBs:F0}");
        }

        Console.WriteLine($"fused kernels: {MistralForCausalLM.FusedKernelStatus}; weights read per step {weightBytes / 1e9:F2} GB");
        Console.WriteLine("== generate ==");
        rows.ForEach(Console.WriteLine);
        return 0;
    }

    private static double WeightBytes(MistralForCausalLM model)
    {
        double bytes = 0;
        foreach (var (name, p) in model.named_parameters())
        {
            if (!name.Contains("embed_tokens", StringComparison.Ordinal))
            {
                bytes += p.numel() * p.ElementSize;
            }
        }

        foreach (var (_, b) in model.named_buffers())
        {
            bytes += b.numel() * b.ElementSize;
        }

        return bytes;
    }
}
