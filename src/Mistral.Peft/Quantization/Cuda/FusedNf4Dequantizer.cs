using System.Runtime.InteropServices;
using System.Text;
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
            if (bf16) {
                unsigned short* o = (unsigned short*)out;
                unsigned int u0 = __float_as_uint(v0);
                unsigned int u1 = __float_as_uint(v1);
                u0 = ((u0 & 0x7fffffffu) > 0x7f800000u) ? 0x7fc00000u : u0 + 0x7fffu + ((u0 >> 16) & 1u);
                u1 = ((u1 & 0x7fffffffu) > 0x7f800000u) ? 0x7fc00000u : u1 + 0x7fffu + ((u1 >> 16) & 1u);
                o[first] = (unsigned short)(u0 >> 16);
                if (first + 1 < n) o[first + 1] = (unsigned short)(u1 >> 16);
            } else {
                float* o = (float*)out;
                o[first] = v0;
                if (first + 1 < n) o[first + 1] = v1;
            }
        }
        """;

    // Process-wide cache of compiled kernels (one per device, in that device's primary context, which libtorch uses).
    private static readonly object Gate = new();
    private static readonly Dictionary<int, (IntPtr Context, IntPtr Function)> Kernels = new();
    private static string status = "not used yet";
    private static string? nvrtcMissing;

    /// <summary>Why the fused kernel is or is not in use (for logs and benchmarks).</summary>
    public static string Status
    {
        get
        {
            lock (Gate)
            {
                return status;
            }
        }
    }

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

        var (context, function) = GetKernel(packed.device.index < 0 ? 0 : packed.device.index);
        if (function == IntPtr.Zero)
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Tensor p = packed.contiguous();
        Tensor s = scales.to(ScalarType.Float32).contiguous();
        Tensor c = pairCodebook.to(ScalarType.Float32).contiguous();
        Tensor output = empty(shape, dtype, packed.device);
        Check(CudaNative.cuCtxPushCurrent(context), "cuCtxPushCurrent");
        try
        {
            Launch(function, p, s, c, output, n, blockSize, dtype == ScalarType.BFloat16);
        }
        finally
        {
            CudaNative.cuCtxPopCurrent(out _);
        }

        return output.MoveToOuterDisposeScope();
    }

    private static unsafe void Launch(IntPtr function, Tensor packed, Tensor scales, Tensor codebook, Tensor output, long n, int blockSize, bool bf16)
    {
        IntPtr pPacked = CudaNative.THSTensor_data(packed.Handle);
        IntPtr pScales = CudaNative.THSTensor_data(scales.Handle);
        IntPtr pCodebook = CudaNative.THSTensor_data(codebook.Handle);
        IntPtr pOut = CudaNative.THSTensor_data(output.Handle);
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
        int rc = CudaNative.cuLaunchKernel(function, grid, 1, 1, threads, 1, 1, 0, IntPtr.Zero, args, null);
        if (rc != CudaNative.CudaSuccess)
        {
            throw new InvalidOperationException($"cuLaunchKernel(nf4_dequantize) failed with CUresult {rc}.");
        }
    }

    private static (IntPtr Context, IntPtr Function) GetKernel(int deviceIndex)
    {
        lock (Gate)
        {
            if (Kernels.TryGetValue(deviceIndex, out var cached))
            {
                return cached;
            }

            (IntPtr, IntPtr) kernel = (IntPtr.Zero, IntPtr.Zero);
            if (nvrtcMissing is not null)
            {
                Kernels[deviceIndex] = kernel;
                return kernel;
            }

            try
            {
                kernel = Compile(deviceIndex);
                status = $"fused NVRTC kernel in use ({string.Join(", ", Kernels.Where(k => k.Value.Function != IntPtr.Zero).Select(k => $"cuda:{k.Key}").Append($"cuda:{deviceIndex}"))})";
            }
            catch (DllNotFoundException e)
            {
                nvrtcMissing = e.Message;
                status = "libtorch ops (fused kernel unavailable: " + e.Message + ")";
            }
            catch (Exception e) when (e is EntryPointNotFoundException or InvalidOperationException)
            {
                status = $"libtorch ops on cuda:{deviceIndex} (fused kernel unavailable: {e.Message})";
            }

            Kernels[deviceIndex] = kernel;
            return kernel;
        }
    }

    private static unsafe (IntPtr Context, IntPtr Function) Compile(int deviceIndex)
    {
        Check(CudaNative.cuInit(0), "cuInit");
        Check(CudaNative.cuDeviceGet(out int device, deviceIndex), "cuDeviceGet");
        // libtorch works in each device's primary context: retain it (kept for the process) and make it current here.
        Check(CudaNative.cuDevicePrimaryCtxRetain(out IntPtr context, device), "cuDevicePrimaryCtxRetain");
        Check(CudaNative.cuDeviceGetAttribute(out int major, CudaNative.AttributeComputeCapabilityMajor, device), "cuDeviceGetAttribute");
        Check(CudaNative.cuDeviceGetAttribute(out int minor, CudaNative.AttributeComputeCapabilityMinor, device), "cuDeviceGetAttribute");
        byte[] ptx = CompileToPtx($"--gpu-architecture=compute_{major}{minor}");
        Check(CudaNative.cuCtxPushCurrent(context), "cuCtxPushCurrent");
        try
        {
            fixed (byte* image = ptx)
            {
                Check(CudaNative.cuModuleLoadData(out IntPtr module, (IntPtr)image), "cuModuleLoadData");
                Check(CudaNative.cuModuleGetFunction(out IntPtr function, module, "nf4_dequantize"), "cuModuleGetFunction");
                return (context, function);
            }
        }
        finally
        {
            CudaNative.cuCtxPopCurrent(out _);
        }
    }

    private static unsafe byte[] CompileToPtx(string architecture)
    {
        IntPtr library = LoadNvrtc();
        var create = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcCreateProgram>(NativeLibrary.GetExport(library, "nvrtcCreateProgram"));
        var compile = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcCompileProgram>(NativeLibrary.GetExport(library, "nvrtcCompileProgram"));
        var ptxSize = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcGetSize>(NativeLibrary.GetExport(library, "nvrtcGetPTXSize"));
        var getPtx = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcGetText>(NativeLibrary.GetExport(library, "nvrtcGetPTX"));
        var logSize = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcGetSize>(NativeLibrary.GetExport(library, "nvrtcGetProgramLogSize"));
        var getLog = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcGetText>(NativeLibrary.GetExport(library, "nvrtcGetProgramLog"));
        var destroy = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcDestroyProgram>(NativeLibrary.GetExport(library, "nvrtcDestroyProgram"));

        byte[] source = Encoding.ASCII.GetBytes(KernelSource + "\0");
        byte[] name = Encoding.ASCII.GetBytes("nf4_dequantize.cu\0");
        byte[] option = Encoding.ASCII.GetBytes(architecture + "\0");
        IntPtr program;
        fixed (byte* s = source)
        fixed (byte* nm = name)
        {
            Check(create(out program, s, nm, 0, IntPtr.Zero, IntPtr.Zero), "nvrtcCreateProgram");
        }

        try
        {
            int rc;
            fixed (byte* o = option)
            {
                IntPtr optionPointer = (IntPtr)o;
                rc = compile(program, 1, &optionPointer);
            }

            if (rc != 0)
            {
                Check(logSize(program, out nuint size), "nvrtcGetProgramLogSize");
                var log = new byte[(int)size];
                fixed (byte* l = log)
                {
                    getLog(program, l);
                }

                throw new InvalidOperationException($"NVRTC could not compile the NF4 kernel ({architecture}): {Encoding.ASCII.GetString(log).TrimEnd('\0')}");
            }

            Check(ptxSize(program, out nuint ptxBytes), "nvrtcGetPTXSize");
            var ptx = new byte[(int)ptxBytes];
            fixed (byte* p = ptx)
            {
                Check(getPtx(program, p), "nvrtcGetPTX");
            }

            return ptx;
        }
        finally
        {
            destroy(ref program);
        }
    }

    private static IntPtr LoadNvrtc()
    {
        foreach (string name in new[] { "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" })
        {
            if (NativeLibrary.TryLoad(name, out IntPtr handle))
            {
                return handle;
            }
        }

        // Next to the application (TorchSharp-cuda-* packages ship libtorch's own, hash-named libnvrtc-<hash>.so.NN),
        // pip-installed CUDA (PyTorch wheels: <site-packages>/nvidia/**/lib, next to torch/lib), and the CUDA toolkit.
        var roots = new[] { AppContext.BaseDirectory }
            .Concat((Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? string.Empty)
                .Split(':', StringSplitOptions.RemoveEmptyEntries)
                .SelectMany(dir => new[] { dir, Path.Combine(dir, "..", "..", "nvidia") }))
            .Append("/usr/local/cuda/lib64");
        foreach (string root in roots.Where(Directory.Exists))
        {
            IEnumerable<string> candidates;
            try
            {
                candidates = Directory.EnumerateFiles(root, "libnvrtc*.so*", new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = 4 })
                    .Where(f => !Path.GetFileName(f).Contains("builtins", StringComparison.Ordinal)
                        && !f.Contains("/stubs/", StringComparison.Ordinal))
                    .OrderByDescending(f => f, StringComparer.Ordinal)
                    .ToList();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            foreach (string file in candidates)
            {
                if (NativeLibrary.TryLoad(file, out IntPtr handle))
                {
                    return handle;
                }
            }
        }

        throw new DllNotFoundException("libnvrtc was not found (looked for libnvrtc*.so* on the loader path, next to the application, under LD_LIBRARY_PATH and its ../../nvidia, and in /usr/local/cuda/lib64).");
    }

    private static void Check(int result, string call)
    {
        if (result != 0)
        {
            throw new InvalidOperationException($"{call} failed with error {result}.");
        }
    }
}
