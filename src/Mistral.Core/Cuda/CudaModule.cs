using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Cuda;

/// <summary>
/// A CUDA C++ source compiled at run time with NVRTC (found next to the application, on the loader path, beside a
/// pip-installed PyTorch, or in <c>/usr/local/cuda</c>) into one module per device, in that device's primary context
/// (the one libtorch uses). Kernels are launched through the driver API on the legacy default stream, which is
/// libtorch's current stream unless a program changes it, so they are ordered with libtorch's own kernels.
/// When NVRTC or the driver cannot be used, <see cref="TryGetFunction"/> answers false and <see cref="Status"/> says why,
/// so callers take their libtorch path.
/// </summary>
internal sealed class CudaModule
{
    private readonly string name;
    private readonly string source;
    private readonly string[] functionNames;
    private readonly object gate = new();
    private readonly Dictionary<int, (IntPtr Context, Dictionary<string, IntPtr> Functions)?> devices = new();
    private string status = "not used yet";

    /// <summary>
    /// Creates a module from <paramref name="source"/> exporting <paramref name="functionNames"/> (extern "C"). The
    /// source goes after <see cref="CudaPrelude.Bf16"/>, whose helpers it uses and must not define again.
    /// </summary>
    public CudaModule(string name, string source, params string[] functionNames)
    {
        this.name = name;
        this.source = CudaPrelude.Prepend(source);
        this.functionNames = functionNames;
    }

    /// <summary>The whole source NVRTC compiles: the prelude, then the module's own code.</summary>
    public string Source => source;

    /// <summary>Why the module's kernels are or are not in use.</summary>
    public string Status
    {
        get
        {
            lock (gate)
            {
                return status;
            }
        }
    }

    /// <summary>The kernel <paramref name="function"/> compiled for the device of <paramref name="onDevice"/>, or false.</summary>
    public bool TryGetFunction(Tensor onDevice, string function, out CudaFunction kernel)
    {
        kernel = default;
        if (onDevice.device.type != DeviceType.CUDA)
        {
            return false;
        }

        int index = onDevice.device.index < 0 ? 0 : onDevice.device.index;
        var compiled = Get(index);
        if (compiled is null || !compiled.Value.Functions.TryGetValue(function, out IntPtr f))
        {
            return false;
        }

        kernel = new CudaFunction(compiled.Value.Context, f, function);
        return true;
    }

    /// <summary>
    /// The kernel <paramref name="function"/> compiled for the device of <paramref name="onDevice"/>, for a caller that
    /// has already chosen the fused path (an autograd backward whose forward ran the module's kernels).
    /// </summary>
    /// <exception cref="InvalidOperationException">The kernel is not available; the message carries <see cref="Status"/>.</exception>
    public CudaFunction GetFunction(Tensor onDevice, string function) =>
        TryGetFunction(onDevice, function, out CudaFunction kernel)
            ? kernel
            : throw new InvalidOperationException($"The CUDA kernel {function} ({name} module) is not available: {Status}");

    private (IntPtr Context, Dictionary<string, IntPtr> Functions)? Get(int deviceIndex)
    {
        lock (gate)
        {
            if (devices.TryGetValue(deviceIndex, out var cached))
            {
                return cached;
            }

            (IntPtr, Dictionary<string, IntPtr>)? result = null;
            try
            {
                result = Nvrtc.Load(name, source, functionNames, deviceIndex);
                status = $"fused NVRTC kernels in use ({string.Join(", ", devices.Where(d => d.Value is not null).Select(d => $"cuda:{d.Key}").Append($"cuda:{deviceIndex}"))})";
            }
            catch (DllNotFoundException e)
            {
                status = "libtorch ops (fused kernels unavailable: " + e.Message + ")";
            }
            catch (Exception e) when (e is EntryPointNotFoundException or InvalidOperationException)
            {
                status = $"libtorch ops on cuda:{deviceIndex} (fused kernels unavailable: {e.Message})";
            }

            devices[deviceIndex] = result;
            return result;
        }
    }
}

/// <summary>A compiled kernel and the context it lives in.</summary>
internal readonly struct CudaFunction
{
    private readonly IntPtr context;
    private readonly IntPtr function;
    private readonly string name;

    internal CudaFunction(IntPtr context, IntPtr function, string name)
    {
        this.context = context;
        this.function = function;
        this.name = name;
    }

    /// <summary>The device address of a tensor's first element (the tensor must stay alive until the kernel has run: libtorch's caching allocator orders reuse on the same stream).</summary>
    public static IntPtr Pointer(Tensor t) => CudaNative.THSTensor_data(t.Handle);

    /// <summary>Launches with <paramref name="args"/> (pointers to each argument's value) on the legacy default stream.</summary>
    public unsafe void Launch(uint gridX, uint gridY, uint gridZ, uint blockX, IntPtr* args, uint sharedBytes = 0)
    {
        Nvrtc.Check(CudaNative.cuCtxPushCurrent(context), "cuCtxPushCurrent");
        try
        {
            int rc = CudaNative.cuLaunchKernel(function, gridX, gridY, gridZ, blockX, 1, 1, sharedBytes, IntPtr.Zero, args, null);
            if (rc != CudaNative.CudaSuccess)
            {
                throw new InvalidOperationException($"cuLaunchKernel({name}) failed with CUresult {rc}.");
            }
        }
        finally
        {
            CudaNative.cuCtxPopCurrent(out _);
        }
    }
}

/// <summary>NVRTC compilation and module loading.</summary>
internal static class Nvrtc
{
    private static IntPtr library;

    internal static unsafe (IntPtr Context, Dictionary<string, IntPtr> Functions) Load(string name, string source, string[] functionNames, int deviceIndex)
    {
        Check(CudaNative.cuInit(0), "cuInit");
        Check(CudaNative.cuDeviceGet(out int device, deviceIndex), "cuDeviceGet");
        // libtorch works in each device's primary context: retain it (kept for the process) and make it current here.
        Check(CudaNative.cuDevicePrimaryCtxRetain(out IntPtr context, device), "cuDevicePrimaryCtxRetain");
        Check(CudaNative.cuDeviceGetAttribute(out int major, CudaNative.AttributeComputeCapabilityMajor, device), "cuDeviceGetAttribute");
        Check(CudaNative.cuDeviceGetAttribute(out int minor, CudaNative.AttributeComputeCapabilityMinor, device), "cuDeviceGetAttribute");
        byte[] ptx = CompileToPtx(name, source, $"--gpu-architecture=compute_{major}{minor}");
        Check(CudaNative.cuCtxPushCurrent(context), "cuCtxPushCurrent");
        try
        {
            fixed (byte* image = ptx)
            {
                Check(CudaNative.cuModuleLoadData(out IntPtr module, (IntPtr)image), "cuModuleLoadData");
                var functions = new Dictionary<string, IntPtr>(StringComparer.Ordinal);
                foreach (string f in functionNames)
                {
                    Check(CudaNative.cuModuleGetFunction(out IntPtr function, module, f), $"cuModuleGetFunction({f})");
                    functions[f] = function;
                }

                return (context, functions);
            }
        }
        finally
        {
            CudaNative.cuCtxPopCurrent(out _);
        }
    }

    private static unsafe byte[] CompileToPtx(string name, string source, string architecture)
    {
        IntPtr lib = LoadLibrary();
        var create = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcCreateProgram>(NativeLibrary.GetExport(lib, "nvrtcCreateProgram"));
        var compile = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcCompileProgram>(NativeLibrary.GetExport(lib, "nvrtcCompileProgram"));
        var ptxSize = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcGetSize>(NativeLibrary.GetExport(lib, "nvrtcGetPTXSize"));
        var getPtx = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcGetText>(NativeLibrary.GetExport(lib, "nvrtcGetPTX"));
        var logSize = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcGetSize>(NativeLibrary.GetExport(lib, "nvrtcGetProgramLogSize"));
        var getLog = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcGetText>(NativeLibrary.GetExport(lib, "nvrtcGetProgramLog"));
        var destroy = Marshal.GetDelegateForFunctionPointer<CudaNative.NvrtcDestroyProgram>(NativeLibrary.GetExport(lib, "nvrtcDestroyProgram"));

        byte[] src = Encoding.ASCII.GetBytes(source + "\0");
        byte[] nm = Encoding.ASCII.GetBytes(name + ".cu\0");
        byte[] option = Encoding.ASCII.GetBytes(architecture + "\0");
        IntPtr program;
        fixed (byte* s = src)
        fixed (byte* n = nm)
        {
            Check(create(out program, s, n, 0, IntPtr.Zero, IntPtr.Zero), "nvrtcCreateProgram");
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

                throw new InvalidOperationException($"NVRTC could not compile {name} ({architecture}): {Encoding.ASCII.GetString(log).TrimEnd('\0')}");
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

    private static IntPtr LoadLibrary()
    {
        if (library != IntPtr.Zero)
        {
            return library;
        }

        foreach (string name in new[] { "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" })
        {
            if (NativeLibrary.TryLoad(name, out IntPtr handle))
            {
                return library = handle;
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
                    return library = handle;
                }
            }
        }

        throw new DllNotFoundException("libnvrtc was not found (looked for libnvrtc*.so* on the loader path, next to the application, under LD_LIBRARY_PATH and its ../../nvidia, and in /usr/local/cuda/lib64).");
    }

    internal static void Check(int result, string call)
    {
        if (result != 0)
        {
            throw new InvalidOperationException($"{call} failed with error {result}.");
        }
    }
}
