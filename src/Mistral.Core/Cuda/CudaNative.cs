using System.Runtime.InteropServices;

namespace Mistral.Core.Cuda;

/// <summary>The few CUDA driver, NVRTC and LibTorchSharp entry points the fused kernels need.</summary>
internal static partial class CudaNative
{
    internal const int CudaSuccess = 0;
    internal const int AttributeComputeCapabilityMajor = 75;
    internal const int AttributeComputeCapabilityMinor = 76;

    // LibTorchSharp (already loaded by TorchSharp): the device pointer of a tensor's first element.
    [LibraryImport("LibTorchSharp")]
    internal static partial IntPtr THSTensor_data(IntPtr handle);

    [LibraryImport("libcuda.so.1")]
    internal static partial int cuInit(uint flags);

    [LibraryImport("libcuda.so.1")]
    internal static partial int cuDeviceGet(out int device, int ordinal);

    [LibraryImport("libcuda.so.1")]
    internal static partial int cuDeviceGetAttribute(out int value, int attribute, int device);

    [LibraryImport("libcuda.so.1")]
    internal static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);

    [LibraryImport("libcuda.so.1", EntryPoint = "cuCtxPushCurrent_v2")]
    internal static partial int cuCtxPushCurrent(IntPtr context);

    [LibraryImport("libcuda.so.1", EntryPoint = "cuCtxPopCurrent_v2")]
    internal static partial int cuCtxPopCurrent(out IntPtr context);

    [LibraryImport("libcuda.so.1")]
    internal static partial int cuModuleLoadData(out IntPtr module, IntPtr image);

    [LibraryImport("libcuda.so.1", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int cuModuleGetFunction(out IntPtr function, IntPtr module, string name);

    [LibraryImport("libcuda.so.1")]
    internal static unsafe partial int cuLaunchKernel(IntPtr function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemBytes, IntPtr stream, IntPtr* kernelParams, IntPtr* extra);

    // NVRTC is loaded by path at run time (its file name carries the CUDA major version).
    internal unsafe delegate int NvrtcCreateProgram(out IntPtr program, byte* source, byte* name, int headers, IntPtr headerSources, IntPtr includeNames);

    internal unsafe delegate int NvrtcCompileProgram(IntPtr program, int optionCount, IntPtr* options);

    internal delegate int NvrtcGetSize(IntPtr program, out nuint size);

    internal unsafe delegate int NvrtcGetText(IntPtr program, byte* text);

    internal delegate int NvrtcDestroyProgram(ref IntPtr program);
}
