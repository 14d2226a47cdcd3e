namespace Mistral.Core.Cuda;

/// <summary>
/// CUDA device code shared by every NVRTC module: <see cref="CudaModule"/> puts it once at the head of each module's
/// source, so kernels call these helpers and never define their own.
/// </summary>
internal static class CudaPrelude
{
    /// <summary>
    /// bfloat16 (held as <c>unsigned short</c>) ↔ float32: <c>bf2f</c> widens exactly; <c>f2bf</c> rounds to nearest,
    /// ties to even, as libtorch's float → bfloat16 cast does, and turns every NaN into the quiet NaN <c>0x7fc0</c>;
    /// <c>silu_mul_one</c> is the SiLU-gated product of two bf16 values rounded as the libtorch ops round; <c>gemv_store</c>
    /// ends the warp-per-feature GEMV kernels (warp sum, gated product, residual, store).
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

        // bf16(bf16(silu(g)) · u): the SiLU-gated product as libtorch's bf16 ops round it.
        __device__ __forceinline__ unsigned short silu_mul_one(unsigned short g, unsigned short u)
        {
            float gv = bf2f(g);
            float silu = bf2f(f2bf(__fdiv_rn(gv, __fadd_rn(1.0f, expf(-gv)))));
            return f2bf(__fmul_rn(silu, bf2f(u)));
        }

        // The end of a warp-per-output-feature GEMV (bf16 and 4-bit): sums each row's lane partials over the warp and
        // lane 0 stores y[m, r] = bf16(sum), or the gated product of the two sums (silu_up), plus the residual if given.
        __device__ __forceinline__ void gemv_store(const float* acc, const float* accb, int M, int lane, int silu_up,
            unsigned short* y, int ldy, long long r, const unsigned short* resid)
        {
            #pragma unroll
            for (int m = 0; m < 8; m++)
            {
                float a = acc[m];
                float b = accb[m];
                for (int off = 16; off > 0; off >>= 1)
                {
                    a += __shfl_xor_sync(0xffffffffu, a, off);
                    if (silu_up) b += __shfl_xor_sync(0xffffffffu, b, off);
                }
                if (lane == 0 && m < M)
                {
                    unsigned short v = silu_up ? silu_mul_one(f2bf(a), f2bf(b)) : f2bf(a);
                    long long at = (long long)m * ldy + r;
                    y[at] = resid ? f2bf(__fadd_rn(bf2f(resid[at]), bf2f(v))) : v;
                }
            }
        }
        """;

    /// <summary><paramref name="source"/> with the prelude at its head, as NVRTC compiles it.</summary>
    public static string Prepend(string source) => Bf16 + "\n\n" + source;
}
