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
        var start = new System.Diagnostics.ProcessStartInfo("python3", [TestPaths.RepoPath("tools", "cuda", "syntax_check.py")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = System.Diagnostics.Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        output.Should().Contain("FusedOps.cs").And.Contain("LoraCombineFunction.cs").And.Contain("LoraDropoutFunction.cs").And.Contain("FusedNf4Dequantizer.cs");
        process.ExitCode.Should().Be(0, output);
    }

    /// <summary>A fact that runs where clang-14 and python3 are on the PATH, and is skipped (saying why) elsewhere.</summary>
    private sealed class ClangFactAttribute : FactAttribute
    {
        public ClangFactAttribute()
        {
            string[] path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator);
            bool Has(string tool) => path.Any(d => File.Exists(Path.Combine(d, tool)));
            if (!Has("clang-14") || !Has("python3"))
            {
                Skip = "clang-14 and python3 are needed to compile the CUDA kernel sources without a GPU (tools/cuda/syntax_check.py).";
            }
        }
    }
}
