using Mistral.Core.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Quantization.Cuda;

/// <summary>
/// <c>y = x @ dequant(W)^T</c> for a few rows of x (decoding, small batches) without materialising the dequantized weight:
/// one warp per output feature streams that row's packed codes (16 bytes, 32 weights per lane per step), rebuilds each
/// weight exactly as <see cref="Nf4Tensor.Dequantize(ScalarType)"/> does (<c>bf16(nf4[code] × scale)</c>, the scale
/// itself <c>map[code] × nested_absmax + offset</c> with double quantization, all rounded as the separate ops round) and
/// accumulates <c>x × w</c> in float32. Only the summation order differs from dequantize-then-matmul.
/// </summary>
internal static class Nf4Gemv
{
    /// <summary>Most rows of x the kernel takes (above this the dequantize-then-matmul path is faster).</summary>
    public const int MaxRows = 8;

    internal const string FunctionName = "nf4_gemv_bf16";

    internal const string Source = """
        extern "C" __global__ void nf4_gemv_bf16(const unsigned short* x, const unsigned char* packed, const void* absmax,
            const float* nested_absmax, const float* nested_map, float offset, int double_quant, const float* pairs,
            unsigned short* y, int M, int N, int K, int block_size, int nested_block)
        {
            __shared__ float table[16];
            if (threadIdx.x < 16) table[threadIdx.x] = pairs[2 * (threadIdx.x * 16)];
            __syncthreads();
            int warp = threadIdx.x >> 5;
            int lane = threadIdx.x & 31;
            long long n = (long long)blockIdx.x * (blockDim.x >> 5) + warp;
            if (n >= N) return;
            float acc[8];
            #pragma unroll
            for (int m = 0; m < 8; m++) acc[m] = 0.0f;
            const unsigned char* row = packed + n * (long long)(K / 2);
            for (int k0 = lane * 32; k0 < K; k0 += 32 * 32)
            {
                uint4 q = *(const uint4*)(row + k0 / 2);
                long long blk = (n * (long long)K + k0) / block_size;
                float s;
                if (double_quant)
                {
                    unsigned char c = ((const unsigned char*)absmax)[blk];
                    s = __fadd_rn(__fmul_rn(nested_map[c], nested_absmax[blk / nested_block]), offset);
                }
                else
                {
                    s = ((const float*)absmax)[blk];
                }

                float w[32];
                unsigned int words[4] = { q.x, q.y, q.z, q.w };
                #pragma unroll
                for (int i = 0; i < 16; i++)
                {
                    unsigned int b = (words[i >> 2] >> (8 * (i & 3))) & 0xffu;
                    w[2 * i] = bf2f(f2bf(__fmul_rn(table[b >> 4], s)));
                    w[2 * i + 1] = bf2f(f2bf(__fmul_rn(table[b & 15u], s)));
                }

                #pragma unroll
                for (int m = 0; m < 8; m++)
                {
                    if (m < M)
                    {
                        const uint4* xp = (const uint4*)(x + (long long)m * K + k0);
                        #pragma unroll
                        for (int j = 0; j < 4; j++)
                        {
                            uint4 xv = xp[j];
                            unsigned int xw[4] = { xv.x, xv.y, xv.z, xv.w };
                            #pragma unroll
                            for (int e = 0; e < 4; e++)
                            {
                                acc[m] = fmaf(__uint_as_float(xw[e] << 16), w[8 * j + 2 * e], acc[m]);
                                acc[m] = fmaf(__uint_as_float(xw[e] & 0xffff0000u), w[8 * j + 2 * e + 1], acc[m]);
                            }
                        }
                    }
                }
            }

            #pragma unroll
            for (int m = 0; m < 8; m++)
            {
                float v = acc[m];
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                if (lane == 0 && m < M) y[(long long)m * N + n] = f2bf(v);
            }
        }
        """;

    /// <summary>
    /// Computes <c>x [M, K] @ W^T</c> into a new bf16 [M, N], or returns null when the kernel does not apply (not CUDA or
    /// not bf16, more than <see cref="MaxRows"/> rows, K or the block size not a multiple of 32, NVRTC missing).
    /// </summary>
    public static unsafe Tensor? TryMultiply(Tensor x, Nf4Tensor weight, Tensor pairCodebook)
    {
        long rows = x.shape[0];
        long k = x.shape[1];
        long n = weight.Shape[0];
        if (x.dim() != 2 || rows < 1 || rows > MaxRows || x.dtype != ScalarType.BFloat16 || k != weight.Shape[1]
            || k % 32 != 0 || weight.BlockSize % 32 != 0 || n > int.MaxValue || k > int.MaxValue
            || !FusedNf4Dequantizer.Kernels.TryGetFunction(x, FunctionName, out CudaFunction function))
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Tensor xs = x.is_contiguous() ? x : x.contiguous();
        Tensor packed = weight.Packed.is_contiguous() ? weight.Packed : weight.Packed.contiguous();
        IntPtr px = CudaFunction.Pointer(xs);
        IntPtr pPacked = CudaFunction.Pointer(packed);
        if (px % 16 != 0 || pPacked % 16 != 0)
        {
            return null;
        }

        bool dq = weight.IsDoubleQuantized;
        Tensor absmax = weight.Absmax.is_contiguous() ? weight.Absmax : weight.Absmax.contiguous();
        Tensor nestedAbsmax = dq ? weight.NestedAbsmax! : absmax;
        Tensor nestedMap = dq ? weight.NestedQuantMap! : absmax;
        Tensor output = empty([rows, n], ScalarType.BFloat16, x.device);
        IntPtr pAbsmax = CudaFunction.Pointer(absmax);
        IntPtr pNestedAbsmax = CudaFunction.Pointer(nestedAbsmax);
        IntPtr pNestedMap = CudaFunction.Pointer(nestedMap);
        IntPtr pPairs = CudaFunction.Pointer(pairCodebook);
        IntPtr pY = CudaFunction.Pointer(output);
        float offset = dq ? weight.NestedOffset : 0f;
        int doubleQuant = dq ? 1 : 0;
        int m = (int)rows;
        int nn = (int)n;
        int kk = (int)k;
        int blockSize = weight.BlockSize;
        int nestedBlock = weight.NestedBlockSize;
        IntPtr* args = stackalloc IntPtr[14];
        args[0] = (IntPtr)(&px);
        args[1] = (IntPtr)(&pPacked);
        args[2] = (IntPtr)(&pAbsmax);
        args[3] = (IntPtr)(&pNestedAbsmax);
        args[4] = (IntPtr)(&pNestedMap);
        args[5] = (IntPtr)(&offset);
        args[6] = (IntPtr)(&doubleQuant);
        args[7] = (IntPtr)(&pPairs);
        args[8] = (IntPtr)(&pY);
        args[9] = (IntPtr)(&m);
        args[10] = (IntPtr)(&nn);
        args[11] = (IntPtr)(&kk);
        args[12] = (IntPtr)(&blockSize);
        args[13] = (IntPtr)(&nestedBlock);
        const int warpsPerBlock = 8;
        function.Launch((uint)((n + warpsPerBlock - 1) / warpsPerBlock), 1, 1, 32 * warpsPerBlock, args);
        return output.MoveToOuterDisposeScope();
    }
}
