using System.Diagnostics;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>
/// Loads a bf16 HF checkpoint folder straight into NF4 (double quant, bf16 compute), layer by layer, and reports the
/// time, the model's tensor bytes, peak device memory (nvidia-smi, this process) and peak host RSS; then greedy
/// decode speed of the 4-bit model; and, for comparison, the same checkpoint loaded in bf16.
/// </summary>
internal static class Nf4LoadBenchmark
{
    public static int Run(Args opts, Device device)
    {
        string folder = opts.Get("checkpoint", "");
        int newTokens = opts.GetInt("new", 64);
        var rows = new List<string>();
        long baseline = GpuMemory.CurrentMiB();
        using (var mem = new GpuMemory())
        {
            var clock = Stopwatch.StartNew();
            QuantizedLoadResult result = QuantizedModelLoader.Load(folder, new QuantizedLoadOptions { Device = device });
            Synchronize(device);
            double seconds = clock.Elapsed.TotalSeconds;
            Thread.Sleep(200);
            long after = GpuMemory.CurrentMiB();
            Print(rows, $"nf4 load ({(result.Prequantized ? "pre-quantized bitsandbytes format" : "quantized while loading, double quant")}) of {folder}: {seconds:F1} s, {result.QuantizedLayers} Linear4bit layers, model tensors {result.TotalBytes / 1e9:F3} GB " +
                     $"(4-bit {result.QuantizedBytes / 1e9:F3} GB + 16-bit {result.DenseBytes / 1e9:F3} GB); device memory of the process: before {baseline} MiB, " +
                     $"peak {mem.PeakMiB} MiB, after {after} MiB; host peak RSS {GpuMemory.HostPeakMiB()} MiB; largest transient tensor {result.LargestTransientBytes / 1e6:F0} MB");
            using MistralForCausalLM model = result.Model;
            if (opts.Get("save", "") is { Length: > 0 } saveTo)
            {
                var saveClock = Stopwatch.StartNew();
                QuantizedCheckpoint.Save(model, saveTo);
                Print(rows, $"saved bitsandbytes-format 4-bit checkpoint to {saveTo} in {saveClock.Elapsed.TotalSeconds:F1} s ({Directory.GetFiles(saveTo).Sum(f => new FileInfo(f).Length) / 1e9:F3} GB on disk)");
            }

            var generator = new TokenGenerator(model);
            var rng = new Random(7);
            foreach (int batch in new[] { 1, 8 })
            {
                int[][] prompts = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, 128).Select(_ => rng.Next(3, model.Config.VocabSize)).ToArray()).ToArray();
                generator.Generate(prompts, GenerationOptions.Greedy with { MaxNewTokens = 8 });
                var times = new List<(double, GenerationTiming)>();
                for (int r = 0; r < 3; r++)
                {
                    var sw = Stopwatch.StartNew();
                    var res = generator.Generate(prompts, GenerationOptions.Greedy with { MaxNewTokens = newTokens });
                    times.Add((sw.Elapsed.TotalSeconds, res.Timing));
                }

                var median = times.OrderBy(t => t.Item1).ElementAt(1);
                Print(rows, $"mistral.net {Path.GetFileName(folder.TrimEnd('/'))} nf4 batch {batch}: prompt 128 new {newTokens}: {median.Item1:F2} s total, prefill {median.Item2.PrefillMilliseconds:F1} ms, decode {median.Item2.DecodeTokensPerSecond:F1} tok/s, end-to-end {batch * newTokens / median.Item1:F1} tok/s; device memory peak {mem.PeakMiB} MiB");
            }
        }

        Console.WriteLine("== nf4 ==");
        rows.ForEach(Console.WriteLine);
        Console.Out.Flush();

        if (opts.Get("bf16", "true") == "true")
        {
            var clock = Stopwatch.StartNew();
            long before = GpuMemory.CurrentMiB();
            using var mem = new GpuMemory();
            var config = MistralConfig.FromFile(Path.Combine(folder, "config.json"));
            using var model = new MistralForCausalLM(config, ScalarType.BFloat16, device);
            CheckpointLoader.Load(model, folder);
            Synchronize(device);
            Console.WriteLine($"bf16 load of {folder}: {clock.Elapsed.TotalSeconds:F1} s; device memory before {before} MiB, peak {mem.PeakMiB} MiB; host peak RSS {GpuMemory.HostPeakMiB()} MiB");
        }

        return 0;
    }

    private static void Print(List<string> rows, string row)
    {
        rows.Add(row);
        Console.WriteLine(row);
    }

    private static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            cuda.synchronize(device);
        }
    }
}
