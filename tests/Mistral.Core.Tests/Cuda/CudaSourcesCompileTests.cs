namespace Mistral.Core.Tests.Cuda;

/// <summary>
/// Every NVRTC kernel source (Core and Peft) compiles for the GPU with clang's CUDA front end — this machine and CI have
/// no GPU and no NVRTC, and a kernel that fails to compile only shows on the lent GPU (as an unused fused path).
/// </summary>
public class CudaSourcesCompileTests
{
    [ClangFact]
    public void EveryKernelSourceCompilesForTheGpu()
    {
        var (exitCode, output) = Run("syntax_check.py");
        output.Should().Contain("FusedOps.cs").And.Contain("LoraCombineFunction.cs").And.Contain("LoraDropoutFunction.cs").And.Contain("FusedNf4Dequantizer.cs").And.Contain("FlatAdamW.cs").And.Contain("GradientClipping.cs");
        exitCode.Should().Be(0, output);
    }

    /// <summary>
    /// The kernels run on the host (tools/cuda/emulate: blocks and threads emulated, warp shuffles and barriers with host
    /// threads) against element-wise references: vector and element paths, tails, misaligned pointers, strided rows, the
    /// NF4 shared codebook, the LoRA dropout's mask in both directions, RoPE into a cache slot, the decoding attention,
    /// the fused AdamW step over parameters in separate allocations, the fused gradient norm over views of flat buffers.
    /// </summary>
    [ClangFact]
    public void EveryKernelComputesItsReferenceWhenEmulatedOnTheHost()
    {
        var (exitCode, output) = Run("emulate_check.py");
        output.Should().Contain("ALL PASSED").And.Contain("decode_attention_bf16").And.Contain("lora_dropout").And.Contain("nf4_dequantize_dq").And.Contain("adamw_flat_f32").And.Contain("grad_norm_total_f32");
        exitCode.Should().Be(0, output);
    }

    private static (int ExitCode, string Output) Run(string script)
    {
        var start = new System.Diagnostics.ProcessStartInfo("python3", [TestPaths.RepoPath("tools", "cuda", script)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output + stderr.Result);
    }

    /// <summary>A fact that runs where clang-14 (and clang++-14) and python3 are on the PATH, and is skipped (saying why) elsewhere.</summary>
    private sealed class ClangFactAttribute : FactAttribute
    {
        public ClangFactAttribute()
        {
            string[] path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator);
            bool Has(string tool) => path.Any(d => File.Exists(Path.Combine(d, tool)));
            if (!Has("clang-14") || !Has("clang++-14") || !Has("python3"))
            {
                Skip = "clang-14 and python3 are needed to compile and emulate the CUDA kernel sources without a GPU (tools/cuda).";
            }
        }
    }
}
