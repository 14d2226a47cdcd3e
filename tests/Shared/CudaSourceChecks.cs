using System.Text.RegularExpressions;
using FluentAssertions;

namespace Mistral.Tests.Shared;

/// <summary>Checks of an NVRTC module's assembled source against the shared CUDA prelude (these kernels cannot be compiled on the CPU).</summary>
internal static partial class CudaSourceChecks
{
    /// <summary>
    /// The source starts with <paramref name="prelude"/>, holds it once, defines <c>bf2f</c> and <c>f2bf</c> only there
    /// (no other device function named like them, prefixed or not), rounds to bf16 nowhere else (the rounding bias
    /// <c>0x7fffu</c> appears once), and exports each of <paramref name="kernels"/>.
    /// </summary>
    public static void UsesThePreludeOnce(string source, string prelude, params string[] kernels)
    {
        source.Should().StartWith(prelude);
        Occurrences(source, prelude).Should().Be(1, "the prelude goes once at the head of each module");
        BfHelperDefinition().Matches(source).Select(m => m.Groups[1].Value).Should().Equal(["bf2f", "f2bf"], "only the prelude defines the bf16 helpers");
        Occurrences(source, "0x7fffu").Should().Be(1, "only the prelude's f2bf rounds float32 to bf16");
        foreach (string kernel in kernels)
        {
            Occurrences(source, $"extern \"C\" __global__ void {kernel}(").Should().Be(1, kernel + " is exported once");
        }
    }

    /// <summary>How many times <paramref name="value"/> occurs in <paramref name="text"/> (ordinal, overlapping not counted).</summary>
    public static int Occurrences(string text, string value)
    {
        int count = 0;
        for (int i = text.IndexOf(value, StringComparison.Ordinal); i >= 0; i = text.IndexOf(value, i + value.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    // A device function whose name ends in bf2f or f2bf (g_bf2f, lc_f2bf, bf2f, ...): the captured group is the name.
    [GeneratedRegex(@"__device__[^;{}()]*?\b(\w*(?:bf2f|f2bf))\s*\(")]
    private static partial Regex BfHelperDefinition();
}
