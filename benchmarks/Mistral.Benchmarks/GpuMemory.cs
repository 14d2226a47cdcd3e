using System.Diagnostics;
using System.Globalization;

namespace Mistral.Benchmarks;

/// <summary>
/// TorchSharp exposes no CUDA memory statistics, so device memory is read from nvidia-smi (this process's used memory,
/// which includes the CUDA context and the caching allocator's reserve), sampled every 50 ms for the peak.
/// </summary>
internal sealed class GpuMemory : IDisposable
{
    private readonly Thread sampler;
    private volatile bool stop;
    private long peakMiB;

    public GpuMemory()
    {
        sampler = new Thread(() =>
        {
            while (!stop)
            {
                long now = CurrentMiB();
                if (now > Interlocked.Read(ref peakMiB))
                {
                    Interlocked.Exchange(ref peakMiB, now);
                }

                Thread.Sleep(50);
            }
        }) { IsBackground = true };
        sampler.Start();
    }

    public long PeakMiB => Interlocked.Read(ref peakMiB);

    public void ResetPeak() => Interlocked.Exchange(ref peakMiB, CurrentMiB());

    public static long CurrentMiB()
    {
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", "--query-compute-apps=pid,used_memory --format=csv,noheader,nounits")
            {
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            using var p = Process.Start(psi)!;
            string text = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            int me = Environment.ProcessId;
            foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                string[] parts = line.Split(',');
                if (parts.Length == 2 && int.Parse(parts[0].Trim(), CultureInfo.InvariantCulture) == me)
                {
                    return long.Parse(parts[1].Trim(), CultureInfo.InvariantCulture);
                }
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }

        return 0;
    }

    /// <summary>Peak resident host memory of this process (VmHWM), MiB.</summary>
    public static long HostPeakMiB() => ReadStatus("VmHWM:") / 1024;

    /// <summary>Resident host memory of this process (VmRSS), MiB.</summary>
    public static long HostMiB() => ReadStatus("VmRSS:") / 1024;

    private static long ReadStatus(string key)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
            {
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    public void Dispose()
    {
        stop = true;
        sampler.Join();
    }
}
