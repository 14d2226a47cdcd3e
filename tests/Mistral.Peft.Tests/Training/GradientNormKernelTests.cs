using FluentAssertions;
using Mistral.Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

/// <summary>
/// The host side of <see cref="GradientClipping"/>'s fused CUDA norm that the CPU can check: the chunk numbering the
/// first pass's blocks follow, which gradients count as segments of the flat buffers (contiguous float32 views inside
/// them, as <see cref="FlatAdamW"/> makes them), and that the CPU never takes the kernels, so clipping with flat buffers
/// stays bit for bit <c>clip_grad_norm_</c> there. The kernels themselves are checked by host emulation
/// (tools/cuda/emulate_check.py) and against libtorch on the GPU lane.
/// </summary>
public class GradientNormKernelTests
{
    [Fact]
    public void ChunkStartsCountEachGradientsChunks()
    {
        GradientClipping.ChunkStarts([0, 1, 8192, 8193, 5], 8192).Should().Equal([0L, 0, 1, 2, 4, 5]);
        GradientClipping.ChunkStarts([16384, 0], 8192).Should().Equal([0L, 2, 2]);
        GradientClipping.ChunkStarts([], 8192).Should().Equal([0L]);
    }

    [Fact]
    public void FlatAdamWGradientsAreSegmentsOfItsBuffers()
    {
        using var scope = NewDisposeScope();
        var (ps, optimizer, flat) = Flat();
        using (optimizer)
        using (flat)
        {
            var grads = ps.Select(p => p.grad!).ToList();
            GradientClipping.TryFindSegments(grads, flat.FlatGradients, out long[] pointers, out long[] lengths).Should().BeTrue();
            lengths.Should().Equal([12L, 5, 0, 4]);
            long start = (long)Mistral.Core.Cuda.CudaFunction.Pointer(flat.FlatGradients[0]);
            new[] { 0, 1, 3 }.Select(i => (pointers[i] - start) / sizeof(float)).Should().Equal([0L, 12, 17], "each gradient starts at its offset in the buffer");
        }
    }

    [Fact]
    public void GradientsOutsideTheBuffersOrLaidOutOtherwiseAreNotSegments()
    {
        using var scope = NewDisposeScope();
        var (ps, optimizer, flat) = Flat();
        using (optimizer)
        using (flat)
        {
            var grads = ps.Select(p => p.grad!).ToList();
            Tensor buffer = flat.FlatGradients[0];
            GradientClipping.TryFindSegments([.. grads, zeros(3)], flat.FlatGradients, out _, out _).Should().BeFalse("a gradient in its own allocation");
            GradientClipping.TryFindSegments([grads[0].t()], flat.FlatGradients, out _, out _).Should().BeFalse("a transposed view is not contiguous");
            GradientClipping.TryFindSegments([buffer.narrow(0, 0, 8).to(ScalarType.Float64)], flat.FlatGradients, out _, out _).Should().BeFalse("a float64 copy");
            GradientClipping.TryFindSegments([buffer.narrow(0, 1, 20)], flat.FlatGradients, out _, out _).Should().BeTrue("any contiguous range inside the buffer");
            GradientClipping.TryFindSegments(grads, [buffer.narrow(0, 0, 20)], out _, out _).Should().BeFalse("the last gradient ends past the buffer given");
            GradientClipping.TryFindSegments(grads, [buffer.to(ScalarType.Float64)], out _, out _).Should().BeFalse("a float64 buffer");
            GradientClipping.TryFindSegments([zeros(0)], flat.FlatGradients, out _, out _).Should().BeTrue("an empty gradient holds no element to find");
        }
    }

    [Theory]
    [InlineData(0.3)]   // clipped
    [InlineData(null)]  // no clipping
    public void OnTheCpuFlatBuffersKeepClipGradNormBitForBit(double? maxNorm)
    {
        using var scope = NewDisposeScope();
        var (ps, optimizer, flat) = Flat();
        using (optimizer)
        using (flat)
        {
            var theirs = ps.Select(p => new Parameter(p.detach().clone()) { grad = p.grad!.clone() }).ToList();
            long fusedBefore = flat.NormCache.FusedNorms;
            GradientClipping.TryFusedNorm([.. ps.Select(p => p.grad!)], flat.FlatGradients, flat.NormCache).Should().BeNull("the fused norm runs on CUDA only");
            double expected = nn.utils.clip_grad_norm_(theirs, maxNorm ?? double.PositiveInfinity);
            using var norm = GradientClipping.ClipGradNorm(ps, maxNorm, flat);
            norm.item<float>().Should().Be((float)expected);
            for (int i = 0; i < ps.Count; i++)
            {
                TensorChecks.Exactly(ps[i].grad!, theirs[i].grad!).Should().BeTrue($"gradient {i} is clipped identically");
            }

            flat.NormCache.FusedNorms.Should().Be(fusedBefore, "no fused norm on the CPU");
            foreach (var p in theirs)
            {
                p.Dispose();
            }
        }
    }

    [Fact]
    public void EachFlatAdamWOwnsItsNormTableAndFreesItWithItsBuffers()
    {
        using var scope = NewDisposeScope();
        var (_, optimizer, first) = Flat();
        var (_, optimizer2, second) = Flat();
        using (optimizer)
        using (optimizer2)
        {
            first.NormCache.Should().NotBeSameAs(second.NormCache, "no table shared between trainers");
            int launches = 0;
            second.NormCache.Run([0], [1], [0, 1], CPU, _ => launches++);
            launches.Should().Be(1);
            second.NormCache.FusedNorms.Should().Be(1);
            first.NormCache.FusedNorms.Should().Be(0, "counts are per optimizer");

            first.Dispose();
            second.Dispose();
            var run = () => first.NormCache.Run([0], [1], [0, 1], CPU, _ => launches++);
            run.Should().Throw<ObjectDisposedException>("disposing the optimizer's buffers frees the table with them");
            launches.Should().Be(1);
        }
    }

    // Four CPU parameters (one empty) under FlatAdamW, their gradients views of its flat buffer holding fixed values
    // (no random draws: other test classes rely on the default generator's sequence).
    private static (List<Parameter> Parameters, optim.Optimizer Optimizer, FlatAdamW Flat) Flat()
    {
        var ps = new List<Parameter> { new(ones(3, 4)), new(ones(5)), new(ones(0)), new(ones(2, 2)) };
        var optimizer = optim.AdamW(ps, lr: 1e-2);
        var flat = FlatAdamW.TryCreate(optimizer)!;
        using (no_grad())
        {
            flat.FlatGradients[0].copy_(arange(21, ScalarType.Float32).sin_().mul_(3));
        }

        return (ps, optimizer, flat);
    }
}
