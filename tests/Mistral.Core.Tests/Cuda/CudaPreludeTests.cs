using Mistral.Core.Cuda;

namespace Mistral.Core.Tests.Cuda;

/// <summary>The bf16 helpers live once in <see cref="CudaPrelude"/>, which <see cref="CudaModule"/> puts at the head of every module.</summary>
public class CudaPreludeTests
{
    [Fact]
    public void AModuleCompilesThePreludeThenItsOwnSource()
    {
        const string own = "extern \"C\" __global__ void k(unsigned short* o) { o[0] = f2bf(1.0f); }";
        var module = new CudaModule("test", own, "k");

        module.Source.Should().Be(CudaPrelude.Bf16 + "\n\n" + own);
        CudaSourceChecks.UsesThePreludeOnce(module.Source, CudaPrelude.Bf16, "k");
    }

    [Fact]
    public void AKernelThatIsNotAvailableIsNamedWithItsModuleAndWhy()
    {
        // GetFunction serves callers already on the fused path (a backward): the error names the kernel, the module and
        // the module's status. A CPU tensor has no compiled kernel.
        var module = new CudaModule("test", "extern \"C\" __global__ void k(float* o) { o[0] = 1.0f; }", "k");
        using var onCpu = TorchSharp.torch.zeros(1);
        module.TryGetFunction(onCpu, "k", out _).Should().BeFalse();
        var get = () => module.GetFunction(onCpu, "k");
        get.Should().Throw<InvalidOperationException>().WithMessage($"The CUDA kernel k (test module) is not available: {module.Status}");
    }

    [Fact]
    public void ThePreludeDefinesEachHelperOnce()
    {
        CudaSourceChecks.Occurrences(CudaPrelude.Bf16, "float bf2f(unsigned short v)").Should().Be(1);
        CudaSourceChecks.Occurrences(CudaPrelude.Bf16, "unsigned short f2bf(float f)").Should().Be(1);
        CudaSourceChecks.Occurrences(CudaPrelude.Bf16, "unsigned short silu_mul_one(").Should().Be(1);
        CudaSourceChecks.Occurrences(CudaPrelude.Bf16, "void gemv_store(").Should().Be(1);
    }

    [Fact]
    public void TheFusedOpsModuleUsesThePreludeOnce() =>
        CudaSourceChecks.UsesThePreludeOnce(FusedOps.Kernels.Source, CudaPrelude.Bf16,
            "rms_norm_bf16", "rope_split_bf16", "silu_mul_bf16", "rms_norm_bwd_bf16", "silu_mul_bwd_bf16");

    [Fact]
    public void TheHostEmbeddingGatherUsesThePreludeOnce() =>
        CudaSourceChecks.UsesThePreludeOnce(Mistral.Core.Modeling.TokenEmbedding.Kernels.Source, CudaPrelude.Bf16, "gather_rows");
}
