using Mistral.Core.Cuda;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// PyTorch's <c>clip_grad_norm_</c> (L2) without a host synchronization: the pre-clip norm stays a device tensor.
/// Where every gradient is a float32 view of a flat CUDA gradient buffer (<see cref="FlatAdamW.FlatGradients"/>), the
/// norm takes two fused NVRTC launches (<see cref="TryFusedNorm"/>) instead of one libtorch norm per gradient.
/// </summary>
internal static class GradientClipping
{
    private const string Source = """
        // The segment (gradient) that chunk b belongs to: the last s with starts[s] <= b, searched in [0, num_segments) —
        // the upper bound of b in starts, minus one. Needs starts[0] <= b < starts[num_segments]; skips empty segments
        // (no chunk: equal starts) because it ends on the last of equal starts.
        __device__ __forceinline__ int gradnorm_segment_of(const long long* starts, int num_segments, long long b)
        {
            int lo = 0, hi = num_segments;
            while (hi - lo > 1)
            {
                int mid = (lo + hi) >> 1;
                if (starts[mid] <= b) lo = mid; else hi = mid;
            }
            return lo;
        }

        // Sums a block's per-thread values into sums[0] in a fixed tree (blockDim.x a power of two, at most 256): the
        // same additions in the same order on every run.
        __device__ __forceinline__ double gradnorm_block_sum(double* sums, double v)
        {
            sums[threadIdx.x] = v;
            __syncthreads();
            for (unsigned int h = blockDim.x >> 1; h > 0; h >>= 1)
            {
                if (threadIdx.x < h) sums[threadIdx.x] += sums[threadIdx.x + h];
                __syncthreads();
            }
            return sums[0];
        }

        // Pass 1 of the global L2 norm over num_segments float32 gradients. table holds, as int64: the segments' device
        // addresses [0, S), their lengths in elements [S, 2S), and the running chunk starts [2S, 3S + 1) (segment s is
        // cut into ceil(len / chunk) chunks of `chunk` elements, numbered from starts[s]). Block b reduces chunk b: its
        // threads stride over the chunk (float4 loads where the chunk starts 16-byte aligned, the rest one by one), each
        // summing x·x in double (the product of two floats is exact in double, so a contracted fma rounds the same),
        // then a fixed tree sums the block and partials[b] gets the chunk's sum of squares. No atomics: each partial is
        // written by one block, so the result does not depend on scheduling.
        extern "C" __global__ void grad_sumsq_f32(const long long* table, int num_segments, long long chunk, double* partials)
        {
            __shared__ double sums[256];
            const long long* lengths = table + num_segments;
            const long long* starts = table + 2 * num_segments;
            long long b = blockIdx.x;
            int s = gradnorm_segment_of(starts, num_segments, b);
            const float* x = (const float*)table[s];
            long long begin = (b - starts[s]) * chunk;
            long long end = begin + chunk < lengths[s] ? begin + chunk : lengths[s];
            double acc = 0.0;
            long long i = begin;
            if ((((unsigned long long)(x + begin)) & 15ull) == 0)
            {
                const float4* v = (const float4*)(x + begin);
                long long quads = (end - begin) >> 2;
                for (long long q = threadIdx.x; q < quads; q += blockDim.x)
                {
                    float4 f = v[q];
                    acc += (double)f.x * (double)f.x;
                    acc += (double)f.y * (double)f.y;
                    acc += (double)f.z * (double)f.z;
                    acc += (double)f.w * (double)f.w;
                }
                i = begin + quads * 4;
            }
            for (i += threadIdx.x; i < end; i += blockDim.x)
            {
                double e = (double)x[i];
                acc += e * e;
            }
            double total = gradnorm_block_sum(sums, acc);
            if (threadIdx.x == 0) partials[b] = total;
        }

        // Pass 2, one block: thread t takes segments t, t + blockDim, ..., sums each one's chunk partials in chunk order
        // (double), rounds its norm to float32 (what the libtorch path stacks: one float32 norm per gradient; written to
        // norms[s] when norms is given), and accumulates the squares of those float32 norms in double; a fixed tree sums
        // the threads and *total = float32(√sum) — a lone gradient's norm comes back as is (√(n·n) = n exactly in double).
        extern "C" __global__ void grad_norm_total_f32(const long long* table, int num_segments, const double* partials,
            float* norms, float* total)
        {
            __shared__ double sums[256];
            const long long* starts = table + 2 * num_segments;
            double acc = 0.0;
            for (int s = threadIdx.x; s < num_segments; s += blockDim.x)
            {
                double sq = 0.0;
                for (long long c = starts[s]; c < starts[s + 1]; c++) sq += partials[c];
                float norm = (float)sqrt(sq);
                if (norms) norms[s] = norm;
                acc += (double)norm * (double)norm;
            }
            double all = gradnorm_block_sum(sums, acc);
            if (threadIdx.x == 0) *total = (float)sqrt(all);
        }
        """;

    /// <summary>Threads per block of both kernels (a power of two, at most the kernels' 256 shared slots).</summary>
    internal const int ThreadsPerBlock = 256;

    /// <summary>Elements per block of the first pass: 8 float4 loads per thread.</summary>
    internal const long ChunkElements = ThreadsPerBlock * 4 * 8;

    private static readonly CudaModule Module = new("grad_norm", Source, "grad_sumsq_f32", "grad_norm_total_f32");

    /// <summary>The compiled module (for tests of its assembled source).</summary>
    internal static CudaModule Kernels => Module;

    /// <summary>Why the fused norm kernels are or are not in use (NVRTC compiled them, or what failed).</summary>
    internal static string KernelStatus => Module.Status;

    /// <summary>
    /// Computes the global L2 norm of the gradients as libtorch's <c>clip_grad_norm_</c> defines it (the norm of each
    /// gradient, then the norm of those norms; a lone gradient's norm as is) and, when <paramref name="maxNorm"/> is set,
    /// multiplies every gradient by <c>min(maxNorm / (norm + 1e-6), 1)</c> computed on the device as
    /// <c>clip_grad_norm_</c> does (<c>full_like(denominator, maxNorm) / denominator</c>, then clamped). Here (no flat
    /// buffers) the norm is libtorch's own ops, so norm and clipped gradients are bit for bit <c>clip_grad_norm_</c>'s.
    /// Parameters without a gradient are skipped; with none at all the norm is 0.
    /// </summary>
    /// <returns>The pre-clip norm, a float 0-d tensor on the gradients' device that the caller owns (outside any dispose scope).</returns>
    public static Tensor ClipGradNorm(IReadOnlyList<Parameter> parameters, double? maxNorm) => ClipGradNorm(parameters, maxNorm, null);

    /// <summary>
    /// <see cref="ClipGradNorm(IReadOnlyList{Parameter}, double?)"/> where every gradient is a view of one of
    /// <paramref name="flat"/>'s gradient buffers (<see cref="FlatAdamW.FlatGradients"/>): the clipping multiplies each
    /// flat buffer once instead of each gradient. With <paramref name="flat"/> null this is the overload without buffers.
    /// On CUDA, when every gradient is a contiguous float32 view inside the flat buffers and the kernels compiled, the
    /// norm comes from two fused launches (<see cref="TryFusedNorm"/>) whose reduction order
    /// differs from libtorch's: not bit for bit <c>clip_grad_norm_</c>, but within float32 rounding of it (relative error
    /// of the norm well under 1e-6; partial sums in double), and deterministic (the same gradients give the same bits).
    /// Everywhere else (the CPU, other dtypes, gradients outside the buffers, no NVRTC) the norm is libtorch's ops as in
    /// the overload without buffers, bit for bit <c>clip_grad_norm_</c>.
    /// </summary>
    public static Tensor ClipGradNorm(IReadOnlyList<Parameter> parameters, double? maxNorm, FlatAdamW? flat)
    {
        IReadOnlyList<Tensor>? flatGradients = flat?.FlatGradients;
        using var guard = no_grad();
        using var scope = NewDisposeScope();
        var grads = new List<Tensor>(parameters.Count);
        foreach (var p in parameters)
        {
            if (p.grad is Tensor g)
            {
                grads.Add(g);
            }
        }

        if (grads.Count == 0)
        {
            return zeros([], ScalarType.Float32, parameters[0].device).DetachFromDisposeScope();
        }

        Tensor total = (flat is null ? null : TryFusedNorm(grads, flatGradients!, flat.NormCache))
            ?? (grads.Count == 1 ? grads[0].norm(2f) : stack(grads.Select(g => g.norm(2f))).norm(2f));
        if (maxNorm is double max)
        {
            Tensor denominator = total.add(1e-6);
            Tensor coefficient = full_like(denominator, max).div_(denominator).clamp_max_(1.0);
            foreach (var g in (IEnumerable<Tensor>?)flatGradients ?? grads)
            {
                g.mul_(coefficient);
            }
        }

        return total.DetachFromDisposeScope();
    }

    /// <summary>
    /// The global L2 norm of <paramref name="grads"/> through the fused kernels, or null where they do not apply (not
    /// CUDA, a buffer or gradient not float32, a gradient not a contiguous view inside <paramref name="flatGradients"/>,
    /// NVRTC unavailable). Pass 1 (<c>grad_sumsq_f32</c>) has one block of <see cref="ThreadsPerBlock"/> threads per
    /// <see cref="ChunkElements"/>-element chunk of each gradient, each writing its chunk's sum of squares; pass 2
    /// (<c>grad_norm_total_f32</c>, one block) sums each gradient's chunks in order, takes its float32 norm and the norm
    /// of those norms. Both read one device table (addresses, lengths, chunk starts) kept in <paramref name="cache"/>,
    /// uploaded when the gradients' addresses or lengths change and reused otherwise. No host synchronization (but for
    /// that upload, a copy from host memory: the first call, or after the gradients moved); returns a float32 0-d tensor
    /// in the current dispose scope.
    /// </summary>
    internal static Tensor? TryFusedNorm(IReadOnlyList<Tensor> grads, IReadOnlyList<Tensor> flatGradients, GradientNormCache cache)
    {
        if (flatGradients.Count == 0 || flatGradients[0].device.type != DeviceType.CUDA
            || flatGradients.Any(f => !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(f.device, flatGradients[0].device)))
        {
            return null; // the kernels run on one device, whose address space holds every gradient inside its buffers
        }

        if (!TryFindSegments(grads, flatGradients, out long[] pointers, out long[] lengths)
            || !Module.TryGetFunction(flatGradients[0], "grad_sumsq_f32", out CudaFunction sumsq)
            || !Module.TryGetFunction(flatGradients[0], "grad_norm_total_f32", out CudaFunction finish))
        {
            return null;
        }

        long[] starts = ChunkStarts(lengths, ChunkElements);
        long chunks = starts[^1];
        if (chunks > int.MaxValue)
        {
            return null;
        }

        Device device = flatGradients[0].device;
        Tensor total = empty([], ScalarType.Float32, device);
        cache.Run(pointers, lengths, starts, device, plan => Launch(sumsq, finish, plan, pointers.Length, chunks, total));
        return total;
    }

    /// <summary>
    /// Where each gradient lies: its first element's address and its length, when every gradient is a contiguous float32
    /// tensor whose elements all lie inside one of the float32 contiguous <paramref name="flatGradients"/> (a view of
    /// it, as <see cref="FlatAdamW"/> makes them); false otherwise. An empty gradient holds no element and counts wherever
    /// it is (libtorch gives an empty tensor a null address; the kernels never read it). Device-agnostic (the CPU tests check it).
    /// </summary>
    internal static bool TryFindSegments(IReadOnlyList<Tensor> grads, IReadOnlyList<Tensor> flatGradients, out long[] pointers, out long[] lengths)
    {
        pointers = new long[grads.Count];
        lengths = new long[grads.Count];
        var ranges = new (long Start, long End)[flatGradients.Count];
        for (int f = 0; f < flatGradients.Count; f++)
        {
            Tensor flat = flatGradients[f];
            if (flat.dtype != ScalarType.Float32 || !flat.is_contiguous())
            {
                return false;
            }

            long start = (long)CudaFunction.Pointer(flat);
            ranges[f] = (start, start + (flat.numel() * sizeof(float)));
        }

        for (int i = 0; i < grads.Count; i++)
        {
            Tensor g = grads[i];
            if (g.dtype != ScalarType.Float32 || !g.is_contiguous())
            {
                return false;
            }

            long start = (long)CudaFunction.Pointer(g);
            long length = g.numel();
            long end = start + (length * sizeof(float));
            if (length > 0 && !ranges.Any(r => r.Start <= start && end <= r.End))
            {
                return false;
            }

            pointers[i] = start;
            lengths[i] = length;
        }

        return true;
    }

    /// <summary>
    /// The first pass's chunk numbering: <paramref name="lengths"/>.Count + 1 running sums from 0 of
    /// <c>ceil(length / chunk)</c> (an empty gradient has no chunk), the last one the number of blocks.
    /// </summary>
    internal static long[] ChunkStarts(IReadOnlyList<long> lengths, long chunk)
    {
        var starts = new long[lengths.Count + 1];
        for (int i = 0; i < lengths.Count; i++)
        {
            starts[i + 1] = starts[i] + ((lengths[i] + chunk - 1) / chunk);
        }

        return starts;
    }

    private static unsafe void Launch(CudaFunction sumsq, CudaFunction finish, GradientNormCache.Plan plan, int segments, long chunks, Tensor total)
    {
        IntPtr ptable = CudaFunction.Pointer(plan.Table);
        IntPtr ppartials = CudaFunction.Pointer(plan.Partials);
        IntPtr pnorms = IntPtr.Zero;
        IntPtr ptotal = CudaFunction.Pointer(total);
        int numSegments = segments;
        long chunk = ChunkElements;
        if (chunks > 0)
        {
            IntPtr* args = stackalloc IntPtr[4];
            args[0] = (IntPtr)(&ptable);
            args[1] = (IntPtr)(&numSegments);
            args[2] = (IntPtr)(&chunk);
            args[3] = (IntPtr)(&ppartials);
            sumsq.Launch((uint)chunks, 1, 1, ThreadsPerBlock, args);
        }

        IntPtr* finishArgs = stackalloc IntPtr[5];
        finishArgs[0] = (IntPtr)(&ptable);
        finishArgs[1] = (IntPtr)(&numSegments);
        finishArgs[2] = (IntPtr)(&ppartials);
        finishArgs[3] = (IntPtr)(&pnorms);
        finishArgs[4] = (IntPtr)(&ptotal);
        finish.Launch(1, 1, 1, ThreadsPerBlock, finishArgs);
    }
}

/// <summary>
/// The fused gradient norm's device table (each gradient's address and length and each chunk's start) and its partial
/// sums, for the gradients of one <see cref="FlatAdamW"/>, which owns it and disposes it with its buffers. It is rebuilt
/// when the gradients' addresses, lengths or device change: the host copy is compared on every call, as
/// <see cref="FlatAdamW"/> compares its addresses. One trainer's clipping at a time (a lock serializes others).
/// </summary>
internal sealed class GradientNormCache : IDisposable
{
    private readonly object gate = new();
    private Plan? cached;
    private long fusedNorms;
    private bool disposed;

    /// <summary>How many norms the fused kernels have computed with this cache (two launches each).</summary>
    public long FusedNorms => Interlocked.Read(ref fusedNorms);

    /// <summary>Runs <paramref name="launch"/> with the table for these gradients (uploading it if they changed), then counts the norm.</summary>
    internal void Run(long[] pointers, long[] lengths, long[] starts, Device device, Action<Plan> launch)
    {
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            launch(GetPlan(pointers, lengths, starts, device));
        }

        Interlocked.Increment(ref fusedNorms);
    }

    /// <summary>Frees the device table and the partial sums.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            disposed = true;
            cached?.Dispose();
            cached = null;
        }
    }

    private Plan GetPlan(long[] pointers, long[] lengths, long[] starts, Device device)
    {
        long[] key = [.. pointers, .. lengths, .. starts];
        if (cached is Plan p && p.Key.AsSpan().SequenceEqual(key) && Mistral.Core.Modeling.DeviceComparison.IsSameDevice(p.Table.device, device))
        {
            return p;
        }

        cached?.Dispose();
        cached = null;
        using var scope = NewDisposeScope();
        Tensor table = tensor(key).to(device).DetachFromDisposeScope();
        Tensor partials = empty([Math.Max(starts[^1], 1)], ScalarType.Float64, device).DetachFromDisposeScope();
        cached = new Plan(key, table, partials);
        return cached;
    }

    /// <summary>A device table and the partial sums buffer for one set of gradients.</summary>
    internal sealed class Plan(long[] key, Tensor table, Tensor partials) : IDisposable
    {
        /// <summary>The host copy of the table: addresses, lengths, chunk starts.</summary>
        public long[] Key { get; } = key;

        /// <summary>The table on the device (int64).</summary>
        public Tensor Table { get; } = table;

        /// <summary>One double per chunk.</summary>
        public Tensor Partials { get; } = partials;

        /// <inheritdoc/>
        public void Dispose()
        {
            Table.Dispose();
            Partials.Dispose();
        }
    }
}
