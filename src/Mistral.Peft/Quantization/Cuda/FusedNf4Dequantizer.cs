using Mistral.Core.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Quantization.Cuda;

/// <summary>
/// One fused CUDA kernel for NF4 dequantization (each byte → its two values from the [256, 2] pair table × the block's float32 scale in float32 → bfloat16 or float32 with
/// round-to-nearest-even), compiled at run time with NVRTC and launched through the driver API on the legacy default
/// stream, which libtorch uses. It replaces four libtorch passes over the weight and gives the same bits.
/// Used automatically for CUDA tensors when NVRTC can be found; otherwise the libtorch path runs (see <see cref="Status"/>).
/// </summary>
internal static class FusedNf4Dequantizer
{
    private const string KernelSource = """
        // out[first] = v0 and, inside n, out[first + 1] = v1: as bf16 (f2bf) or float32.
        __device__ __forceinline__ void store_pair(void* out, long long first, long long n, float v0, float v1, int bf16)
        {
            if (bf16) {
                unsigned short* o = (unsigned short*)out;
                o[first] = f2bf(v0);
                if (first + 1 < n) o[first + 1] = f2bf(v1);
            } else {
                float* o = (float*)out;
                o[first] = v0;
                if (first + 1 < n) o[first + 1] = v1;
            }
        }

        // Sixteen outputs (eight packed bytes) per thread, all in one quantization block: an 8-byte load, the pair
        // codebook from shared memory, 16-byte stores. Same products as the element-wise path.
        __device__ __forceinline__ void store16(const float* sp, uint2 raw, float s, void* out, long long first, int bf16)
        {
            __align__(16) float v[16];
            #pragma unroll
            for (int k = 0; k < 4; k++)
            {
                unsigned int b0 = (raw.x >> (8 * k)) & 0xffu;
                unsigned int b1 = (raw.y >> (8 * k)) & 0xffu;
                v[2 * k] = __fmul_rn(sp[2 * b0], s);
                v[2 * k + 1] = __fmul_rn(sp[2 * b0 + 1], s);
                v[8 + 2 * k] = __fmul_rn(sp[2 * b1], s);
                v[9 + 2 * k] = __fmul_rn(sp[2 * b1 + 1], s);
            }
            if (bf16)
            {
                __align__(16) unsigned short o[16];
                #pragma unroll
                for (int j = 0; j < 16; j++) o[j] = f2bf(v[j]);
                uint4* dst = (uint4*)((unsigned short*)out + first);
                dst[0] = ((const uint4*)o)[0];
                dst[1] = ((const uint4*)o)[1];
            }
            else
            {
                float4* dst = (float4*)((float*)out + first);
                #pragma unroll
                for (int j = 0; j < 4; j++) dst[j] = ((const float4*)v)[j];
            }
        }

        // Whether thread t's sixteen outputs take the vector path: whole, inside one block, aligned pointers.
        __device__ __forceinline__ bool vec16(long long first, long long n, int block_size, const void* packed, const void* out)
        {
            return first + 16 <= n && (block_size & 15) == 0
                && ((unsigned long long)packed & 7) == 0 && ((unsigned long long)out & 15) == 0;
        }

        // Sixteen outputs per thread through store16 where vec16 allows, else pair by pair; scale(block) gives a block's
        // float32 scale. Both kernels below are this with their own scale.
        template <typename Scale>
        __device__ __forceinline__ void dequantize16(const unsigned char* packed, const float* pairs, void* out, long long n,
                                                     int block_size, int bf16, Scale scale)
        {
            __shared__ float sp[512];
            for (int j = threadIdx.x; j < 512; j += blockDim.x) sp[j] = pairs[j];
            __syncthreads();
            long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            long long first = 16 * t;
            if (first >= n) return;
            if (vec16(first, n, block_size, packed, out))
            {
                store16(sp, ((const uint2*)packed)[t], scale(first / block_size), out, first, bf16);
                return;
            }
            for (long long e = first; e < first + 16 && e < n; e += 2)
            {
                unsigned char b = packed[e / 2];
                float s = scale(e / block_size);
                store_pair(out, e, n, __fmul_rn(sp[2 * b], s), __fmul_rn(sp[2 * b + 1], s), bf16);
            }
        }

        extern "C" __global__ void nf4_dequantize(const unsigned char* packed, const float* scales, const float* pairs,
                                                  void* out, long long n, int block_size, int bf16)
        {
            dequantize16(packed, pairs, out, n, block_size, bf16, [=](long long blk) { return scales[blk]; });
        }

        // The same with double quantization: the block's scale is rebuilt from its 8-bit code as Nf4Tensor.BlockScales
        // does (map[code] * nested_absmax[block / nested_block], then + offset, each rounded in float32).
        extern "C" __global__ void nf4_dequantize_dq(const unsigned char* packed, const unsigned char* codes, const float* nested_absmax,
                                                     const float* nested_map, float offset, const float* pairs,
                                                     void* out, long long n, int block_size, int nested_block, int bf16)
        {
            dequantize16(packed, pairs, out, n, block_size, bf16, [=](long long blk)
            {
                return __fadd_rn(__fmul_rn(nested_map[codes[blk]], nested_absmax[blk / nested_block]), offset);
            });
        }
        """;

    private static readonly CudaModule Module = new("nf4_kernels", KernelSource + "\n\n" + Nf4Gemv.Source, "nf4_dequantize", "nf4_dequantize_dq", Nf4Gemv.FunctionName);

    /// <summary>Why the fused kernel is or is not in use (for logs and benchmarks).</summary>
    public static string Status => Module.Status;

    /// <summary>The compiled NF4 module (dequantization and GEMV kernels).</summary>
    internal static CudaModule Kernels => Module;

    /// <summary>
    /// Dequantizes into a new tensor of <paramref name="shape"/> and <paramref name="dtype"/>, or returns null when the
    /// kernel cannot be used (not CUDA, unsupported dtype, NVRTC missing) so the caller takes the libtorch path.
    /// </summary>
    public static Tensor? TryDequantize(Tensor packed, Tensor scales, Tensor pairCodebook, long n, int blockSize, long[] shape, ScalarType dtype)
    {
        if (packed.device.type != DeviceType.CUDA || dtype is not (ScalarType.BFloat16 or ScalarType.Float32) || blockSize % 2 != 0)
        {
            return null;
        }

        if (!Module.TryGetFunction(packed, "nf4_dequantize", out CudaFunction function))
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Tensor p = packed.contiguous();
        Tensor s = scales.to(ScalarType.Float32).contiguous();
        Tensor c = pairCodebook.to(ScalarType.Float32).contiguous();
        Tensor output = empty(shape, dtype, packed.device);
        Launch(function, p, s, c, output, n, blockSize, dtype == ScalarType.BFloat16);
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Dequantizes a double-quantized weight straight from its 8-bit scale codes (no float32 scale tensor is built), or
    /// returns null when the kernel cannot be used. Bit-identical to <see cref="Nf4Tensor.BlockScales"/> + <see cref="TryDequantize"/>.
    /// </summary>
    public static unsafe Tensor? TryDequantizeDoubleQuant(Nf4Tensor weight, Tensor pairCodebook, ScalarType dtype)
    {
        Tensor packed = weight.Packed;
        if (packed.device.type != DeviceType.CUDA || dtype is not (ScalarType.BFloat16 or ScalarType.Float32) || weight.BlockSize % 2 != 0
            || !weight.IsDoubleQuantized || weight.Absmax.dtype != ScalarType.Byte
            || !Module.TryGetFunction(packed, "nf4_dequantize_dq", out CudaFunction function))
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Tensor p = packed.contiguous();
        Tensor codes = weight.Absmax.contiguous();
        Tensor nestedAbsmax = weight.NestedAbsmax!.to(ScalarType.Float32).contiguous();
        Tensor nestedMap = weight.NestedQuantMap!.to(ScalarType.Float32).contiguous();
        Tensor c = pairCodebook.to(ScalarType.Float32).contiguous();
        Tensor output = empty([.. weight.Shape], dtype, packed.device);
        IntPtr pPacked = CudaFunction.Pointer(p);
        IntPtr pCodes = CudaFunction.Pointer(codes);
        IntPtr pNested = CudaFunction.Pointer(nestedAbsmax);
        IntPtr pMap = CudaFunction.Pointer(nestedMap);
        float offset = weight.NestedOffset;
        IntPtr pPairs = CudaFunction.Pointer(c);
        IntPtr pOut = CudaFunction.Pointer(output);
        long n = weight.ElementCount;
        int block = weight.BlockSize;
        int nestedBlock = weight.NestedBlockSize;
        int isBf16 = dtype == ScalarType.BFloat16 ? 1 : 0;
        IntPtr* args = stackalloc IntPtr[11];
        args[0] = (IntPtr)(&pPacked);
        args[1] = (IntPtr)(&pCodes);
        args[2] = (IntPtr)(&pNested);
        args[3] = (IntPtr)(&pMap);
        args[4] = (IntPtr)(&offset);
        args[5] = (IntPtr)(&pPairs);
        args[6] = (IntPtr)(&pOut);
        args[7] = (IntPtr)(&n);
        args[8] = (IntPtr)(&block);
        args[9] = (IntPtr)(&nestedBlock);
        args[10] = (IntPtr)(&isBf16);
        long lanes = (n + 15) / 16; // sixteen outputs per thread
        const uint threads = 256;
        function.Launch((uint)((lanes + threads - 1) / threads), 1, 1, threads, args);
        return output.MoveToOuterDisposeScope();
    }

    private static unsafe void Launch(CudaFunction function, Tensor packed, Tensor scales, Tensor codebook, Tensor output, long n, int blockSize, bool bf16)
    {
        IntPtr pPacked = CudaFunction.Pointer(packed);
        IntPtr pScales = CudaFunction.Pointer(scales);
        IntPtr pCodebook = CudaFunction.Pointer(codebook);
        IntPtr pOut = CudaFunction.Pointer(output);
        long count = n;
        int block = blockSize;
        int isBf16 = bf16 ? 1 : 0;
        IntPtr* args = stackalloc IntPtr[7];
        args[0] = (IntPtr)(&pPacked);
        args[1] = (IntPtr)(&pScales);
        args[2] = (IntPtr)(&pCodebook);
        args[3] = (IntPtr)(&pOut);
        args[4] = (IntPtr)(&count);
        args[5] = (IntPtr)(&block);
        args[6] = (IntPtr)(&isBf16);
        long lanes = (n + 15) / 16; // sixteen outputs per thread
        const uint threads = 256;
        uint grid = (uint)((lanes + threads - 1) / threads);
        function.Launch(grid, 1, 1, threads, args);
    }
}
