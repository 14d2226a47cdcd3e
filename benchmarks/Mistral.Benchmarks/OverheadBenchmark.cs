using System.Diagnostics;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>
/// Host-side cost per operation on the device: a tiny in-place libtorch op, one that allocates, a view, a fused NVRTC
/// kernel launch, and a decode-sized forward of the 7B layer structure with tiny widths (all host overhead), with the
/// garbage collections that ran. Tells launch-bound decoding from GPU-bound.
/// </summary>
internal static class OverheadBenchmark
{
    public static int Run(Args opts, Device device)
    {
        int n = opts.GetInt("ops", 20000);
        using var x = ones([1, 8], ScalarType.BFloat16, device);
        using var y = ones([1, 8], ScalarType.BFloat16, device);
        var rows = new List<string>();
        void Time(string name, Action op)
        {
            for (int i = 0; i < 200; i++)
            {
                op();
            }

            Sync(device);
            int gc0 = GC.CollectionCount(0);
            int gc2 = GC.CollectionCount(2);
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                op();
            }

            double enqueue = sw.Elapsed.TotalMilliseconds;
            Sync(device);
            double total = sw.Elapsed.TotalMilliseconds;
            rows.Add($"{name}: {1000 * enqueue / n:F2} us/op host, {1000 * total / n:F2} us/op with the device done; GC gen0 {GC.CollectionCount(0) - gc0}, gen2 {GC.CollectionCount(2) - gc2}");
        }

        using var inference = inference_mode();
        Time("in-place add_ (libtorch)", () => x.add_(1));
        Time("allocating add (libtorch, disposed)", () =>
        {
            using var z = x + y;
        });
        Time("view (host only)", () =>
        {
            using var v = x.view(8, 1);
        });
        Time("dispose scope + allocating add", () =>
        {
            using var scope = NewDisposeScope();
            var z = x + y;
        });
        using var norm = new RmsNorm(8, 1e-5, ScalarType.BFloat16, device);
        Time("RmsNorm module, fused kernel (NVRTC launch + alloc)", () =>
        {
            using var z = norm.forward(x);
        });
        norm.UseFusedKernel = false;
        Time("RmsNorm module, libtorch ops", () =>
        {
            using var z = norm.forward(x);
        });

        // Host cost of the tensor queries the fused paths make before a launch.
        long sink = 0;
        Time("x.shape (P/Invoke + array)", () => sink += x.shape[^1]);
        Time("x.size(1)", () => sink += x.size(1));
        Time("x.device.type (Device object)", () => sink += (int)x.device.type);
        Time("x.device_type", () => sink += (int)x.device_type);
        Time("x.dtype", () => sink += (int)x.dtype);
        Time("x.stride()", () => sink += x.stride()[0]);
        Time("x.stride(0)", () => sink += x.stride(0));
        Time("x.is_contiguous()", () => sink += x.is_contiguous() ? 1 : 0);
        Time("x.requires_grad", () => sink += x.requires_grad ? 1 : 0);
        Time("is_grad_enabled()", () => sink += is_grad_enabled() ? 1 : 0);
        Time("x.numel()", () => sink += x.numel());
        Time("x.dim()", () => sink += x.dim());
        Time("narrow (view)", () =>
        {
            using var v = x.narrow(1, 0, 4);
        });
        Time("empty([1, 8]) bf16", () =>
        {
            using var v = empty([1, 8], ScalarType.BFloat16, device);
        });
        GC.KeepAlive(sink);
        using var dense = new Mistral.Core.Modeling.Linear(256, 64, false, ScalarType.BFloat16, device);
        using var quantized = Mistral.Peft.Quantization.Linear4bit.FromLinear(dense, new Mistral.Peft.Quantization.Nf4Options { ComputeDtype = ScalarType.BFloat16, DoubleQuant = true });
        Time("Linear4bit.QuantizedWeight() (host only; once per 4-bit forward)", () =>
        {
            using var w = quantized.QuantizedWeight();
        });

        MistralConfig config = MistralConfig.Mistral7B with { HiddenSize = 256, IntermediateSize = 512, HeadDim = 8 };
        using var model = RandomWeights.Model(config, ScalarType.BFloat16, device);
        model.eval();
        foreach (int variant in new[] { 0, 1, 2 })
        {
            bool fused = variant > 0;
            model.UseFusedKernels = fused;
            model.UseFusedAttention = fused;
            model.UseFusedDecodeAttention = fused;
            model.UseFusedDecodeProjections = fused;
            if (variant == 2)
            {
                foreach (var (_, m) in ModuleTree.NamedModules(model))
                {
                    if (m is MistralAttention attention)
                    {
                        attention.UseFusedKernels = false; // norms and MLP fused, attention (RoPE layout, GQA fold) not
                    }
                }
            }

            using var cache = new KvCache(config, 1, 512, ScalarType.BFloat16, device);
            using var ids = ones([1, 1], ScalarType.Int64, device);
            using var mask = ones([1, 1], ScalarType.Int64, device);
            for (int i = 0; i < 20; i++)
            {
                using var o = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Cache = cache, LastPositionLogitsOnly = true });
            }

            Sync(device);
            int gc0 = GC.CollectionCount(0);
            var sw = Stopwatch.StartNew();
            const int steps = 100;
            for (int i = 0; i < steps; i++)
            {
                using var o = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Cache = cache, LastPositionLogitsOnly = true });
            }

            double enqueue = sw.Elapsed.TotalMilliseconds;
            Sync(device);
            rows.Add($"decode forward, 32 thin layers, fused {(variant == 2 ? "except attention" : fused)}: {enqueue / steps:F2} ms/step host, {sw.Elapsed.TotalMilliseconds / steps:F2} ms/step done; GC gen0 {GC.CollectionCount(0) - gc0}");
            using var prompt = ones([1, 128], ScalarType.Int64, device);
            var times = new List<double>();
            for (int i = 0; i < 12; i++)
            {
                using var c2 = new KvCache(config, 1, 512, ScalarType.BFloat16, device);
                Sync(device);
                var p = Stopwatch.StartNew();
                using var o = model.forward(new CausalLMInput(prompt) { Cache = c2, LastPositionLogitsOnly = true });
                double host = p.Elapsed.TotalMilliseconds;
                Sync(device);
                times.Add(p.Elapsed.TotalMilliseconds);
                if (i == 11)
                {
                    rows.Add($"prefill forward of 128 tokens, 32 thin layers, fused {(variant == 2 ? "except attention" : fused)}: {host:F2} ms host (last), {times.Skip(2).Order().ElementAt(5):F2} ms done (median)");
                }
            }
        }

        Console.WriteLine($"== overhead (OMP_NUM_THREADS={Environment.GetEnvironmentVariable("OMP_NUM_THREADS") ?? "unset"}, torch threads {get_num_threads()}, {Environment.ProcessorCount} processors) ==");
        rows.ForEach(Console.WriteLine);
        return 0;
    }

    private static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            cuda.synchronize(device);
        }
    }
}
