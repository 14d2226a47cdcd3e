using Mistral.Core.Cuda;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization.Cuda;
using Mistral.Peft.Training;

namespace Mistral.Peft.Tests.Cuda;

/// <summary>The LoRA, NF4, flat AdamW and gradient norm modules take the bf16 helpers from <see cref="CudaPrelude"/> and define none of their own.</summary>
public class CudaPreludeTests
{
    [Fact]
    public void TheLoraCombineModuleUsesThePreludeOnce() =>
        CudaSourceChecks.UsesThePreludeOnce(LoraCombineFunction.Kernels.Source, CudaPrelude.Bf16, "lora_combine_fwd", "lora_combine_bwd", "lora_b_combine");

    [Fact]
    public void TheLoraDropoutModuleUsesThePreludeOnce() =>
        CudaSourceChecks.UsesThePreludeOnce(
            LoraDropoutFunction.Kernels.Source, CudaPrelude.Bf16, "lora_dropout_fwd", "lora_dropout_bwd", "lora_xa", "lora_split_sum", "lora_grad_x", "lora_grad_a");

    [Fact]
    public void TheFusedProductKernelsDrawTheDropoutMaskFromTheSameHash()
    {
        // One keep() for every kernel: a second hash would give backward a mask other than forward's.
        string source = LoraDropoutFunction.Kernels.Source;
        CudaSourceChecks.Occurrences(source, "bool keep(").Should().Be(1);
        CudaSourceChecks.Occurrences(source, "lora_y8(").Should().Be(3, "lora_xa and lora_grad_a make the dropped input through one helper (one definition, two calls)");
    }

    [Fact]
    public void TheFlatAdamWModuleUsesThePreludeOnce() =>
        CudaSourceChecks.UsesThePreludeOnce(FlatAdamW.Kernels.Source, CudaPrelude.Bf16, "adamw_flat_f32");

    [Fact]
    public void TheGradientNormModuleUsesThePreludeOnce() =>
        CudaSourceChecks.UsesThePreludeOnce(GradientClipping.Kernels.Source, CudaPrelude.Bf16, "grad_sumsq_f32", "grad_norm_total_f32");

    [Fact]
    public void TheNf4ModuleUsesThePreludeOnce()
    {
        string source = FusedNf4Dequantizer.Kernels.Source;
        CudaSourceChecks.UsesThePreludeOnce(source, CudaPrelude.Bf16, "nf4_dequantize", "nf4_dequantize_dq", Nf4Gemv.FunctionName);
        CudaSourceChecks.Occurrences(source, "store_pair(").Should().Be(2, "both dequantize kernels write their pairs through one helper (one definition, one call in their shared body)");
        CudaSourceChecks.Occurrences(source, "dequantize16(").Should().Be(3, "both dequantize kernels are one body with their own block scale (one definition, two calls)");
    }
}
