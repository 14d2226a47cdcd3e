namespace Mistral.Core.Cuda;

/// <summary>
/// CUDA device code shared by every NVRTC module: <see cref="CudaModule"/> puts it once at the head of each module's
/// source, so kernels call these helpers and never define their own.
/// </summary>
internal static class CudaPrelude
{
    /// <summary>
    /// bfloat16 (held as <c>unsigned short</c>) ↔ float32: <c>bf2f</c> widens exactly; <c>f2bf</c> rounds to nearest,
    /// ties to even, as libtorch's float → bfloat16 cast does, and turns every NaN into the quiet NaN <c>0x7fc0</c>.
    /// </summary>
    public const string Bf16 = """
        __device__ __forceinline__ float bf2f(unsigned short v) { return __uint_as_float(((unsigned int)v) << 16); }
        __device__ __forceinline__ unsigned short f2bf(float f)
        {
            unsigned int u = __float_as_uint(f);
            if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)0x7fc0u;
            u += 0x7fffu + ((u >> 16) & 1u);
            return (unsigned short)(u >> 16);
        }
        """;

    /// <summary><paramref name="source"/> with the prelude at its head, as NVRTC compiles it.</summary>
    public static string Prepend(string source) => Bf16 + "\n\n" + source;
}
