using System.Runtime.InteropServices;

namespace Mistral.Benchmarks;

/// <summary>
/// A per-kernel GPU profile of this process through CUPTI's activity API (the library Nsight and torch.profiler use):
/// every kernel, memcpy and memset between <see cref="Start"/> and <see cref="Stop"/> with its device time, summed by
/// name and by category. No Nsight is installed on the lent GPU machine; CUPTI ships with PyTorch's CUDA wheels there.
/// Set MISTRAL_CUPTI to the library's path (tools/gpu_bench_all.sh finds it), else libcupti.so is looked up by name.
/// Only the leading fields of the kernel record are read (kind, start, end, name at byte 104), which every CUPTI kernel
/// record version since CUpti_ActivityKernel4 shares.
/// </summary>
internal static unsafe class KernelProfiler
{
    private const int KindMemcpy = 1;
    private const int KindMemset = 2;
    private const int KindConcurrentKernel = 10;
    private const int BufferBytes = 8 << 20;

    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, (int Count, double Ns)> Totals = [];
    private static delegate* unmanaged<int, int> enable;
    private static delegate* unmanaged<int, int> disable;
    private static delegate* unmanaged<uint, int> flushAll;
    private static delegate* unmanaged<byte*, nuint, byte**, int> nextRecord;
    private static bool ready;

    /// <summary>Loads CUPTI and registers the buffer callbacks; false (with the reason printed) where it is missing.</summary>
    public static bool TryInitialize()
    {
        if (ready)
        {
            return true;
        }

        string? path = Environment.GetEnvironmentVariable("MISTRAL_CUPTI");
        nint lib = 0;
        foreach (string? candidate in new[] { path, "libcupti.so", "libcupti.so.13", "libcupti.so.12" })
        {
            if (!string.IsNullOrEmpty(candidate) && NativeLibrary.TryLoad(candidate, out lib))
            {
                break;
            }
        }

        if (lib == 0)
        {
            Console.WriteLine("kernel profile: CUPTI not found (set MISTRAL_CUPTI to libcupti.so's path)");
            return false;
        }

        var register = (delegate* unmanaged<delegate* unmanaged<byte**, nuint*, nuint*, void>, delegate* unmanaged<nint, uint, byte*, nuint, nuint, void>, int>)
            NativeLibrary.GetExport(lib, "cuptiActivityRegisterCallbacks");
        enable = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(lib, "cuptiActivityEnable");
        disable = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(lib, "cuptiActivityDisable");
        flushAll = (delegate* unmanaged<uint, int>)NativeLibrary.GetExport(lib, "cuptiActivityFlushAll");
        nextRecord = (delegate* unmanaged<byte*, nuint, byte**, int>)NativeLibrary.GetExport(lib, "cuptiActivityGetNextRecord");
        int rc = register(&BufferRequested, &BufferCompleted);
        if (rc != 0)
        {
            Console.WriteLine($"kernel profile: cuptiActivityRegisterCallbacks returned {rc}");
            return false;
        }

        ready = true;
        return true;
    }

    /// <summary>Starts recording kernels, memcpys and memsets (clears earlier totals).</summary>
    public static void Start()
    {
        lock (Gate)
        {
            Totals.Clear();
        }

        Check(enable(KindConcurrentKernel), "enable kernels");
        Check(enable(KindMemcpy), "enable memcpy");
        Check(enable(KindMemset), "enable memset");
    }

    /// <summary>Stops recording (call after a device synchronisation) and flushes every buffer into the totals.</summary>
    public static void Stop()
    {
        Check(disable(KindConcurrentKernel), "disable kernels");
        Check(disable(KindMemcpy), "disable memcpy");
        Check(disable(KindMemset), "disable memset");
        Check(flushAll(1), "flush"); // CUPTI_ACTIVITY_FLAG_FLUSH_FORCED
    }

    /// <summary>Prints the top kernels by device time, the categories, and kernel count and busy time per step.</summary>
    public static void Print(string title, int steps, double wallSeconds, int top = 30)
    {
        List<(string Name, int Count, double Ns)> rows;
        lock (Gate)
        {
            rows = Totals.Select(kv => (kv.Key, kv.Value.Count, kv.Value.Ns)).OrderByDescending(r => r.Ns).ToList();
        }

        double busy = rows.Sum(r => r.Ns) / 1e6 / steps;
        int count = rows.Sum(r => r.Count) / Math.Max(1, steps);
        Console.WriteLine($"== kernel profile: {title} ==");
        Console.WriteLine($"per step: {count} kernels/copies, {busy:F1} ms device busy of {1000 * wallSeconds / steps:F1} ms wall ({100 * busy / (1000 * wallSeconds / steps):F0}%)");
        foreach (var group in rows.GroupBy(r => Category(r.Name)).OrderByDescending(g => g.Sum(r => r.Ns)))
        {
            Console.WriteLine($"  {group.Key,-22} {group.Sum(r => r.Ns) / 1e6 / steps,9:F2} ms {group.Sum(r => r.Count) / steps,7} launches");
        }

        foreach (var r in rows.Take(top))
        {
            string name = r.Name.Length > 110 ? r.Name[..110] : r.Name;
            Console.WriteLine($"  {r.Ns / 1e6 / steps,9:F2} ms {r.Count / steps,6}x {r.Ns / 1e3 / r.Count,8:F1} us  {name}");
        }
    }

    private static string Category(string name)
    {
        string n = name.ToLowerInvariant();
        return n switch
        {
            _ when n.StartsWith("memcpy", StringComparison.Ordinal) || n.StartsWith("memset", StringComparison.Ordinal) => "memcpy/memset",
            _ when n.Contains("gemm") || n.Contains("cutlass") || n.Contains("xmma") || n.Contains("nvjet") || n.Contains("cublas") => "matmul (cuBLAS)",
            _ when n.Contains("fmha") || n.Contains("flash") || n.Contains("attention") => "attention (SDPA)",
            _ when n.Contains("dropout") || n.Contains("philox") || n.Contains("bernoulli") => "dropout/RNG",
            _ when n.Contains("nf4") || n.Contains("dequant") => "NF4 (NVRTC)",
            _ when n.Contains("rms") || n.Contains("silu_mul") || n.Contains("lora") || n.Contains("rope") || n.Contains("adamw") => "fused (NVRTC)",
            _ when n.Contains("reduce") || n.Contains("norm") => "reductions",
            _ when n.Contains("cat") || n.Contains("copy") || n.Contains("index") || n.Contains("scatter") || n.Contains("gather") => "copies/indexing",
            _ when n.Contains("elementwise") || n.Contains("vectorized") || n.Contains("unrolled") => "elementwise",
            _ => "other",
        };
    }

    private static void Check(int rc, string what)
    {
        if (rc != 0)
        {
            Console.WriteLine($"kernel profile: CUPTI {what} returned {rc}");
        }
    }

    [UnmanagedCallersOnly]
    private static void BufferRequested(byte** buffer, nuint* size, nuint* maxRecords)
    {
        *buffer = (byte*)NativeMemory.AlignedAlloc(BufferBytes, 8);
        *size = BufferBytes;
        *maxRecords = 0;
    }

    [UnmanagedCallersOnly]
    private static void BufferCompleted(nint context, uint streamId, byte* buffer, nuint size, nuint validSize)
    {
        byte* record = null;
        lock (Gate)
        {
            while (nextRecord(buffer, validSize, &record) == 0)
            {
                int kind = *(int*)record;
                double ns = *(ulong*)(record + 24) - (double)*(ulong*)(record + 16);
                string name = kind switch
                {
                    KindConcurrentKernel => Marshal.PtrToStringUTF8(*(nint*)(record + 104)) ?? "?",
                    KindMemcpy => $"memcpy kind {record[4]}",
                    KindMemset => "memset",
                    _ => $"activity {kind}",
                };
                Totals[name] = Totals.TryGetValue(name, out var t) ? (t.Count + 1, t.Ns + ns) : (1, ns);
            }
        }

        NativeMemory.AlignedFree(buffer);
    }
}
