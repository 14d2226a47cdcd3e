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

        extern "C" __global__ void nf4_dequantize(const unsigned char* packed, const float* scales, const float* pairs,
                                                  void* out, long long n, int block_size, int bf16)
        {
            long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            long long first = 2 * i;
            if (first >= n) return;
            unsigned char b = packed[i];
            float s = scales[first / block_size];
            float v0 = __fmul_rn(pairs[2 * b], s);
            float v1 = __fmul_rn(pairs[2 * b + 1], s);
            store_pair(out, first, n, v0, v1, bf16);
        }

        // The same with double quantization: the block's scale is rebuilt from its 8-bit code as Nf4Tensor.BlockScales
        // does (map[code] * nested_absmax[block / nested_block], then + offset, each rounded in float32).
        extern "C" __global__ void nf4_dequantize_dq(const unsigned char* packed, const unsigned char* codes, const float* nested_absmax,
                                                     const float* nested_map, float offset, const float* pairs,
                                                     void* out, long long n, int block_size, int nested_block, int bf16)
        {
            long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            long long first = 2 * i;
            if (first >= n) return;
            unsigned char b = packed[i];
            long long blk = first / block_size;
            float s = __fadd_rn(__fmul_rn(nested_map[codes[blk]], nested_absmax[blk / nested_block]), offset);
            float v0 = __fmul_rn(pairs[2 * b], s);
            float v1 = __fmul_rn(pairs[2 * b + 1], s);
            store_pair(out, first, n, v0, v1, bf16);
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
        long bytes = (n + 1) / 2;
        const uint threads = 256;
        function.Launch((uint)((bytes + threads - 1) / threads), 1, 1, threads, args);
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
        long bytes = (n + 1) / 2;
        const uint threads = 256;
        uint grid = (uint)((bytes + threads - 1) / threads);
        function.Launch(grid, 1, 1, threads, args);
    }
}
