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
        // Adds x[m, :] · dequant(row n of one 4-bit weight) to acc[m] for the m < M rows, this lane's share of K.
        __device__ __forceinline__ void nf4_row_dot(const unsigned short* x, int M, int K, const unsigned char* packed,
            const void* absmax, const float* nested_absmax, const float* nested_map, float offset, int double_quant,
            int block_size, int nested_block, const float* table, long long n, int lane, float* acc)
        {
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
        }

        // Up to three 4-bit weights (same block sizes and quantization kind) in one launch, one warp per output feature.
        // Plain: y[m, r] over the features of weight 0, then 1, then 2 (row stride ldy). silu_up (n1 = n0, n2 = 0):
        // y[m, r] = bf16(bf16(silu(bf16(x·w0[r]))) · bf16(x·w1[r])). With resid (y's layout): y = bf16(resid + bf16(·)).
        extern "C" __global__ void nf4_gemv_bf16(const unsigned short* x, int M, int K,
            const unsigned char* p0, const void* a0, const float* na0, const float* nm0, float off0, int n0,
            const unsigned char* p1, const void* a1, const float* na1, const float* nm1, float off1, int n1,
            const unsigned char* p2, const void* a2, const float* na2, const float* nm2, float off2, int n2,
            int double_quant, const float* pairs, int block_size, int nested_block, unsigned short* y, int ldy, int silu_up,
            const unsigned short* resid)
        {
            __shared__ float table[16];
            if (threadIdx.x < 16) table[threadIdx.x] = pairs[2 * (threadIdx.x * 16)];
            __syncthreads();
            int lane = threadIdx.x & 31;
            long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
            if (r >= (silu_up ? n0 : (long long)n0 + n1 + n2)) return;
            float acc[8];
            float accb[8];
            #pragma unroll
            for (int m = 0; m < 8; m++) { acc[m] = 0.0f; accb[m] = 0.0f; }
            if (silu_up || r < n0)
                nf4_row_dot(x, M, K, p0, a0, na0, nm0, off0, double_quant, block_size, nested_block, table, r, lane, acc);
            else if (r < (long long)n0 + n1)
                nf4_row_dot(x, M, K, p1, a1, na1, nm1, off1, double_quant, block_size, nested_block, table, r - n0, lane, acc);
            else
                nf4_row_dot(x, M, K, p2, a2, na2, nm2, off2, double_quant, block_size, nested_block, table, r - n0 - n1, lane, acc);
            if (silu_up)
                nf4_row_dot(x, M, K, p1, a1, na1, nm1, off1, double_quant, block_size, nested_block, table, r, lane, accb);

            gemv_store(acc, accb, M, lane, silu_up, y, ldy, r, resid);
        }
        """;

    /// <summary>
    /// Computes <c>x [M, K] @ W^T</c> into a new bf16 [M, N], or returns null when the kernel does not apply (not CUDA or
    /// not bf16, more than <see cref="MaxRows"/> rows, K or the block size not a multiple of 32, NVRTC missing).
    /// </summary>
    public static Tensor? TryMultiply(Tensor x, Nf4Tensor weight, Tensor pairCodebook) => TryMultiplyGroup(x, [weight], pairCodebook, siluUp: false);

    /// <summary>
    /// Up to three 4-bit weights with the same K, block sizes and quantization kind in one launch: plain, <c>x @ [W0; W1;
    /// W2]^T</c> as one bf16 [M, ΣN]; with <paramref name="siluUp"/> (two weights of equal N), <c>silu(x @ W0^T) · (x @ W1^T)</c>
    /// rounded as the separate ops round; with <paramref name="residual"/> (bf16 [M, N], contiguous) <c>residual + that</c>.
    /// Null when the kernel does not apply.
    /// </summary>
    public static unsafe Tensor? TryMultiplyGroup(Tensor x, IReadOnlyList<Nf4Tensor> weights, Tensor pairCodebook, bool siluUp, Tensor? residual = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count is < 1 or > 3 || (siluUp && (weights.Count != 2 || weights[0].Shape[0] != weights[1].Shape[0])))
        {
            return null;
        }

        if (x.dim() != 2)
        {
            return null;
        }

        Nf4Tensor first = weights[0];
        long rows = x.size(0);
        long k = x.size(1);
        long total = 0;
        foreach (Nf4Tensor w in weights)
        {
            if (w.Shape.Count != 2 || w.Shape[1] != k || w.BlockSize != first.BlockSize || w.IsDoubleQuantized != first.IsDoubleQuantized
                || (first.IsDoubleQuantized && w.NestedBlockSize != first.NestedBlockSize) || !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(w.Packed.device, x.device))
            {
                return null;
            }

            total += w.Shape[0];
        }

        long n = siluUp ? first.Shape[0] : total;
        if (rows < 1 || rows > MaxRows || x.dtype != ScalarType.BFloat16 || k % 32 != 0 || first.BlockSize % 32 != 0
            || n > int.MaxValue || k > int.MaxValue || !FusedNf4Dequantizer.Kernels.TryGetFunction(x, FunctionName, out CudaFunction function))
        {
            return null;
        }

        if (residual is not null && (residual.dtype != ScalarType.BFloat16 || residual.dim() != 2 || residual.size(0) != rows
            || residual.size(1) != n || !residual.is_contiguous() || !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(residual.device, x.device)))
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Tensor xs = x.is_contiguous() ? x : x.contiguous();
        IntPtr px = CudaFunction.Pointer(xs);
        if (px % 16 != 0)
        {
            return null;
        }

        bool dq = first.IsDoubleQuantized;
        // Per weight: packed codes, absmax, nested absmax, nested map, offset, features (unused slots repeat the last weight with 0 features).
        var packed = new IntPtr[3];
        var absmax = new IntPtr[3];
        var nestedAbsmax = new IntPtr[3];
        var nestedMap = new IntPtr[3];
        var offsets = new float[3];
        var features = new int[3];
        for (int i = 0; i < 3; i++)
        {
            Nf4Tensor w = weights[Math.Min(i, weights.Count - 1)];
            Tensor p = w.Packed.is_contiguous() ? w.Packed : w.Packed.contiguous();
            Tensor a = w.Absmax.is_contiguous() ? w.Absmax : w.Absmax.contiguous();
            packed[i] = CudaFunction.Pointer(p);
            if (packed[i] % 16 != 0)
            {
                return null;
            }

            absmax[i] = CudaFunction.Pointer(a);
            nestedAbsmax[i] = dq ? CudaFunction.Pointer(w.NestedAbsmax!) : absmax[i];
            nestedMap[i] = dq ? CudaFunction.Pointer(w.NestedQuantMap!) : absmax[i];
            offsets[i] = dq ? w.NestedOffset : 0f;
            features[i] = i < weights.Count ? (int)w.Shape[0] : 0;
        }

        Tensor output = empty([rows, n], ScalarType.BFloat16, x.device);
        IntPtr pPairs = CudaFunction.Pointer(pairCodebook);
        IntPtr pY = CudaFunction.Pointer(output);
        int doubleQuant = dq ? 1 : 0;
        int m = (int)rows;
        int kk = (int)k;
        int blockSize = first.BlockSize;
        int nestedBlock = first.NestedBlockSize;
        int ldy = (int)n;
        int silu = siluUp ? 1 : 0;
        IntPtr pResid = residual is null ? IntPtr.Zero : CudaFunction.Pointer(residual);
        IntPtr* args = stackalloc IntPtr[29];
        args[0] = (IntPtr)(&px);
        args[1] = (IntPtr)(&m);
        args[2] = (IntPtr)(&kk);
        fixed (IntPtr* pp = packed, pa = absmax, pna = nestedAbsmax, pnm = nestedMap)
        fixed (float* po = offsets)
        fixed (int* pn = features)
        {
            for (int i = 0; i < 3; i++)
            {
                args[3 + (6 * i)] = (IntPtr)(pp + i);
                args[4 + (6 * i)] = (IntPtr)(pa + i);
                args[5 + (6 * i)] = (IntPtr)(pna + i);
                args[6 + (6 * i)] = (IntPtr)(pnm + i);
                args[7 + (6 * i)] = (IntPtr)(po + i);
                args[8 + (6 * i)] = (IntPtr)(pn + i);
            }

            args[21] = (IntPtr)(&doubleQuant);
            args[22] = (IntPtr)(&pPairs);
            args[23] = (IntPtr)(&blockSize);
            args[24] = (IntPtr)(&nestedBlock);
            args[25] = (IntPtr)(&pY);
            args[26] = (IntPtr)(&ldy);
            args[27] = (IntPtr)(&silu);
            args[28] = (IntPtr)(&pResid);
            const int warpsPerBlock = 8;
            function.Launch((uint)((n + warpsPerBlock - 1) / warpsPerBlock), 1, 1, 32 * warpsPerBlock, args);
        }

        return output.MoveToOuterDisposeScope();
    }
}
