using System.Diagnostics;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>
/// NF4 kernel costs on one Mistral-7B MLP weight [14336, 4096]: quantize, dequantize, and a training-shaped
/// Linear4bit forward+backward (batch 4 × 512 tokens, bf16) against a bf16 Linear doing the same matmuls.
/// Median of 20 CUDA-synchronised runs after warm-up.
/// </summary>
internal static class Nf4OpsBenchmark
{
    public static int Run(Device device)
    {
        manual_seed(5);
        using var weight = randn([14336, 4096], ScalarType.BFloat16, device) * 0.02;
        var options = new Nf4Options();
        double quantize = Time(device, () => Nf4Tensor.Quantize(weight, options).Dispose());
        using var nf4 = Nf4Tensor.Quantize(weight, options);
        double dequantize = Time(device, () => nf4.Dequantize(ScalarType.BFloat16).Dispose());
        double dequantizeTorch = Time(device, () => nf4.Dequantize(ScalarType.BFloat16, allowFusedKernel: false).Dispose());
        Console.WriteLine($"dequantize path: {Mistral.Peft.Quantization.Cuda.FusedNf4Dequantizer.Status}");
        // The fused kernel must give exactly the libtorch path's bits (odd sizes, other block sizes, both dtypes).
        bool same = true;
        foreach (var (rows, cols, block, dq) in new[] { (14336L, 4096L, 64, true), (7L, 37L, 64, false), (24L, 80L, 128, true), (9000L, 1L, 32, true), (64L, 4096L, 4096, false) })
        {
            using var w = randn([rows, cols], ScalarType.Float32, device);
            using var q = Nf4Tensor.Quantize(w, new Nf4Options { BlockSize = block, DoubleQuant = dq });
            foreach (ScalarType dt in new[] { ScalarType.BFloat16, ScalarType.Float32 })
            {
                using var a = q.Dequantize(dt);
                using var b = q.Dequantize(dt, allowFusedKernel: false);
                using var eq = a.eq(b).all();
                bool ok = eq.item<bool>() && a.dtype == b.dtype;
                same &= ok;
                Console.WriteLine($"fused vs libtorch {rows}x{cols} block {block} dq {dq} {dt}: {(ok ? "bit-identical" : "DIFFERENT")}");
            }
        }

        Console.WriteLine(same ? "FUSED KERNEL BIT-EXACT" : "FUSED KERNEL MISMATCH");
        using var layer = Linear4bit.FromNf4(nf4);
        using var x = randn([4, 512, 4096], ScalarType.BFloat16, device).requires_grad_(true);
        double nf4Step = Time(device, () =>
        {
            using var scope = NewDisposeScope();
            layer.forward(x).sum().backward();
        });
        using var dense = weight.clone().requires_grad_(false);
        double denseStep = Time(device, () =>
        {
            using var scope = NewDisposeScope();
            nn.functional.linear(x, dense).sum().backward();
        });
        Console.WriteLine("== nf4 ops (14336x4096, block 64, double quant) ==");
        Console.WriteLine($"quantize {quantize:F3} ms, dequantize to bf16 {dequantize:F3} ms (libtorch ops: {dequantizeTorch:F3} ms); forward+backward over 4x512 tokens: Linear4bit {nf4Step:F3} ms vs bf16 Linear {denseStep:F3} ms (dequantize share {2 * dequantize / nf4Step:P0})");
        return same ? 0 : 1;
    }

    private static double Time(Device device, Action action)
    {
        for (int i = 0; i < 3; i++)
        {
            action();
        }

        var times = new List<double>();
        for (int i = 0; i < 20; i++)
        {
            Sync(device);
            var sw = Stopwatch.StartNew();
            action();
            Sync(device);
            times.Add(sw.Elapsed.TotalMilliseconds);
        }

        times.Sort();
        return times[times.Count / 2];
    }

    private static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            cuda.synchronize(device);
        }
    }
}
