using System.Runtime.InteropServices;
using TorchSharp;

namespace Mistral.Pipeline.Diagnostics;

/// <summary>
/// Samples memory in the background while a phase runs and keeps the peak: on CUDA the GPU's used memory from the driver
/// (<c>cuMemGetInfo</c>: the whole device, every process on it), elsewhere this process's resident host memory
/// (<c>VmRSS</c>). TorchSharp exposes no allocator statistics, so this is what can be measured without changing any state.
/// </summary>
internal sealed partial class MemoryMonitor : IDisposable
{
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _stop = new(false);
    private readonly bool _cuda;
    private readonly int _ordinal;
    private long _peak = -1;
    private int _stopped;

    private MemoryMonitor(torch.Device device, TimeSpan interval)
    {
        _cuda = device.type == DeviceType.CUDA;
        _ordinal = Math.Max(device.index, 0);
        Kind = _cuda ? "device (CUDA driver, whole GPU)" : "host RSS (this process)";
        _thread = new Thread(() => Run(interval)) { IsBackground = true, Name = "Mistral.Pipeline memory monitor" };
        _thread.Start();
    }

    /// <summary>What is measured.</summary>
    public string Kind { get; }

    /// <summary>The peak so far, or null when nothing could be read.</summary>
    public long? PeakBytes => Interlocked.Read(ref _peak) is var p && p >= 0 ? p : null;

    /// <summary>Starts sampling every <paramref name="interval"/> (default 25 ms).</summary>
    public static MemoryMonitor Start(torch.Device device, TimeSpan? interval = null) => new(device, interval ?? TimeSpan.FromMilliseconds(25));

    /// <summary>What <see cref="Kind"/> would be for a device.</summary>
    public static string KindFor(torch.Device device) =>
        device.type == DeviceType.CUDA ? "device (CUDA driver, whole GPU)" : "host RSS (this process)";

    /// <summary>Stops sampling (waiting for the sampler) and returns the peak, or null when nothing could be read.</summary>
    public long? Stop()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 0)
        {
            _stop.Set();
            _thread.Join();
            _stop.Dispose();
        }

        return PeakBytes;
    }

    public void Dispose() => Stop();

    private void Run(TimeSpan interval)
    {
        IntPtr context = IntPtr.Zero;
        int device = 0;
        bool retained = false;
        bool pushed = false;
        try
        {
            if (_cuda)
            {
                if (Cuda.cuInit(0) != 0 || Cuda.cuDeviceGet(out device, _ordinal) != 0)
                {
                    return;
                }

                retained = Cuda.cuDevicePrimaryCtxRetain(out context, device) == 0;
                pushed = retained && Cuda.cuCtxPushCurrent(context) == 0;
                if (!pushed)
                {
                    return;
                }
            }

            bool last = false;
            while (true)
            {
                long? now = _cuda ? CudaUsed() : HostRss();
                if (now is long n)
                {
                    long seen;
                    do
                    {
                        seen = Interlocked.Read(ref _peak);
                    }
                    while (n > seen && Interlocked.CompareExchange(ref _peak, n, seen) != seen);
                }

                if (last)
                {
                    break;
                }

                last = _stop.Wait(interval); // one more sample after Stop, so the end of the phase is seen
            }
        }
        catch (Exception)
        {
            // No driver, no /proc, an unexpected format: memory stays unknown (null), never a wrong number or a crash.
        }
        finally
        {
            if (pushed)
            {
                Cuda.cuCtxPopCurrent(out _);
            }

            if (retained)
            {
                Cuda.cuDevicePrimaryCtxRelease(device);
            }
        }
    }

    private static long? CudaUsed() =>
        Cuda.cuMemGetInfo(out nuint free, out nuint total) == 0 ? (long)(total - free) : null;

    /// <summary>This process's resident set (Linux <c>/proc/self/status</c>), or the working set elsewhere.</summary>
    internal static long? HostRss()
    {
        try
        {
            if (OperatingSystem.IsLinux())
            {
                foreach (string line in File.ReadLines("/proc/self/status"))
                {
                    if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    {
                        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                        return long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
                    }
                }

                return null;
            }

            return Environment.WorkingSet;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static partial class Cuda
    {
        private const string Lib = "libcuda.so.1";

        [LibraryImport(Lib)]
        internal static partial int cuInit(uint flags);

        [LibraryImport(Lib)]
        internal static partial int cuDeviceGet(out int device, int ordinal);

        [LibraryImport(Lib)]
        internal static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);

        [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
        internal static partial int cuDevicePrimaryCtxRelease(int device);

        [LibraryImport(Lib, EntryPoint = "cuCtxPushCurrent_v2")]
        internal static partial int cuCtxPushCurrent(IntPtr context);

        [LibraryImport(Lib, EntryPoint = "cuCtxPopCurrent_v2")]
        internal static partial int cuCtxPopCurrent(out IntPtr context);

        [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")]
        internal static partial int cuMemGetInfo(out nuint free, out nuint total);
    }
}
