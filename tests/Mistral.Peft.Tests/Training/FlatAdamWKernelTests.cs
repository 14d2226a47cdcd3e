using FluentAssertions;
using Mistral.Peft.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

/// <summary>
/// The host side of <see cref="FlatAdamW"/>'s fused CUDA kernel that the CPU can check: the offset table the kernel
/// searches, the overlap guard that keeps parameters sharing memory on the op sequence, and that a CPU group never takes
/// the kernel (its step stays the op sequence, bit for bit TorchSharp's AdamW). The kernel itself is checked by host
/// emulation (tools/cuda/emulate_check.py) and on the GPU lane.
/// </summary>
public class FlatAdamWKernelTests
{
    [Fact]
    public void OffsetsAreTheRunningStartsEndingInTheTotal()
    {
        FlatAdamW.Offsets([5, 64, 1, 0, 300]).Should().Equal([0L, 5, 69, 70, 70, 370]);
        FlatAdamW.Offsets([7]).Should().Equal([0L, 7]);
        FlatAdamW.Offsets([]).Should().Equal([0L]);
    }

    [Fact]
    public void OverlappingParametersAreNotDisjoint()
    {
        // Three float ranges in no particular order: [1000, 1020), [2000, 2400), [1020, 1024) — the last touches the first.
        FlatAdamW.Disjoint([1000, 2000, 1020], [5, 100, 1], sizeof(float)).Should().BeTrue("ranges that only touch do not share an element");
        FlatAdamW.Disjoint([1000, 2000, 1016], [5, 100, 1], sizeof(float)).Should().BeFalse("the third range is the first one's last element");
        FlatAdamW.Disjoint([2000, 1000, 2396], [100, 5, 3], sizeof(float)).Should().BeFalse("the third range starts inside the first");
        FlatAdamW.Disjoint([1000, 1000], [5, 5], sizeof(float)).Should().BeFalse("one parameter listed twice");
        FlatAdamW.Disjoint([1000, 1004, 0], [5, 0, 0], sizeof(float)).Should().BeTrue("empty parameters hold no element");
    }

    [Fact]
    public void TheOffsetTableLocatesEveryElementOfItsParameter()
    {
        // What the kernel does per element (the last offset ≤ i), done here over the table the host builds.
        long[] counts = [5, 64, 1, 0, 300, 7];
        long[] offsets = FlatAdamW.Offsets(counts);
        for (long i = 0; i < offsets[^1]; i++)
        {
            int k = Array.FindLastIndex(offsets, o => o <= i);
            k.Should().BeLessThan(counts.Length);
            counts[k].Should().BeGreaterThan(0, "element {0} lies in a non-empty parameter", i);
            (i - offsets[k]).Should().BeInRange(0, counts[k] - 1);
        }
    }

    [Fact]
    public void ACpuGroupKeepsTheOpSequence()
    {
        using var scope = NewDisposeScope();
        // No random draws: other test classes rely on the default generator's sequence.
        var ps = new List<TorchSharp.Modules.Parameter> { new(arange(12, ScalarType.Float32).reshape(3, 4) / 7), new(ones(5)) };
        using var optimizer = optim.AdamW(ps, lr: 1e-2, weight_decay: 0.1);
        using var flat = FlatAdamW.TryCreate(optimizer);
        flat.Should().NotBeNull();
        flat!.UseFusedKernel.Should().BeTrue("the kernel is on by default");
        FlatAdamW.TryGetKernel(flat.FlatGradients[0], out _).Should().BeFalse("the kernel runs on CUDA only");
        using (no_grad())
        {
            foreach (var p in ps)
            {
                p.grad!.copy_(p.detach().cos());
            }
        }

        using var before = ps[0].detach().clone();
        flat.Step();
        flat.LastStepFused.Should().BeFalse("a CPU group steps through the libtorch ops");
        flat.FusedLaunches.Should().Be(0);
        ps[0].detach().ne(before).any().item<bool>().Should().BeTrue("the step still ran");
    }
}
