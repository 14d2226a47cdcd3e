using Mistral.Core.Cuda;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// TorchSharp's <see cref="AdamW"/> step, run over one flat gradient buffer per parameter group instead of parameter by
/// parameter. The gradients of a group are views into one flat buffer (which clipping reads as one tensor).
/// On CUDA a float32 group takes one fused NVRTC kernel per step (<see cref="UseFusedKernel"/>): it finds each
/// element's parameter through an offset table and updates the parameter and both moments in place, where the optimizer
/// allocated them, with the same float32 operations in the same order as the libtorch ops it replaces, no full-size
/// temporaries and no per-parameter launches. The CPU, other dtypes and a machine without NVRTC take the op sequence:
/// the moments move into two more flat buffers (the states' moments become views of them) the first time it runs, so
/// the moment updates, the denominator and the step are about ten kernels per group, and only the final <c>p += Δ</c>
/// (and a non-zero weight decay) still touches each parameter. LoRA trains hundreds of small tensors (448 for r 16 on
/// all projections of Mistral-7B), where TorchSharp's per-parameter loop launches nine kernels each and dominates the
/// host's time per step. The arithmetic per element is the optimizer's own, in its order (see <see cref="Step"/>), and
/// the optimizer object keeps owning its state, so checkpoints and resume read and write it as before.
/// </summary>
internal sealed class FlatAdamW : IDisposable
{
    private const string Source = """
        // The parameter holding flat element i: the last k with offsets[k] <= i, searched in [lo, num_params) — the
        // upper bound of i in offsets, minus one. Needs offsets[lo] <= i < offsets[num_params]; skips empty parameters
        // (equal offsets) because it ends on the last of equal starts.
        __device__ __forceinline__ int adamw_param_of(const long long* offsets, int lo, int num_params, long long i)
        {
            int hi = num_params;
            while (hi - lo > 1)
            {
                int mid = (lo + hi) >> 1;
                if (offsets[mid] <= i) lo = mid; else hi = mid;
            }
            return lo;
        }

        // One AdamW step over a group: grad is the group's flat gradient buffer (n elements); parameter k holds flat
        // elements [offsets[k], offsets[k + 1]) at the device address ptrs[k], its first moment at ptrs[num_params + k]
        // and its second at ptrs[2 * num_params + k] (the optimizer's own per-parameter tensors, or views of flat buffers:
        // the kernel does not care where they live). Per element, in float32,
        // the libtorch CUDA ops of the op sequence in their order and rounding: p·decay (mul_, only when weight decay is
        // set), m·β₁ + (1 − β₁)·g (mul_, then add_ whose a + α·b is one fma), v·β₂ + (1 − β₂)·(g·g) (mul_, then addcmul_,
        // one fma over the rounded product), √v · (1/√(1 − β₂ᵗ)) (sqrt, then the division by a host scalar that libtorch
        // takes as a product with its float reciprocal) + ε, then p + (m / d)·step_size (div, mul_, add_). Four elements
        // per thread, a block's 4·blockDim elements strided by blockDim so each load and store is coalesced.
        extern "C" __global__ void adamw_flat_f32(const float* grad, const long long* ptrs, const long long* offsets,
            int num_params, long long n, int has_decay, float decay,
            float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float inv_bias_correction2_sqrt,
            float eps, float step_size)
        {
            long long base = (long long)blockIdx.x * blockDim.x * 4 + threadIdx.x;
            int k = 0;
            for (int j = 0; j < 4; j++)
            {
                long long i = base + (long long)j * blockDim.x;
                if (i >= n) return;
                k = adamw_param_of(offsets, k, num_params, i);
                long long e = i - offsets[k];
                float* p = (float*)ptrs[k] + e;
                float* pm = (float*)ptrs[num_params + k] + e;
                float* pv = (float*)ptrs[2 * num_params + k] + e;
                float g = grad[i];
                float w = *p;
                if (has_decay) w = __fmul_rn(w, decay);
                float m = fmaf(one_minus_beta1, g, __fmul_rn(*pm, beta1));
                float v = fmaf(one_minus_beta2, __fmul_rn(g, g), __fmul_rn(*pv, beta2));
                float d = __fadd_rn(__fmul_rn(__fsqrt_rn(v), inv_bias_correction2_sqrt), eps);
                *pm = m;
                *pv = v;
                *p = __fadd_rn(w, __fmul_rn(__fdiv_rn(m, d), step_size));
            }
        }
        """;

    private const int ThreadsPerBlock = 256;
    private const int ElementsPerThread = 4;

    private static readonly CudaModule Module = new("flat_adamw", Source, "adamw_flat_f32");

    private readonly optim.Optimizer optimizer;
    private readonly List<Group> groups;
    private bool disposed;

    private FlatAdamW(optim.Optimizer optimizer, List<Group> groups)
    {
        this.optimizer = optimizer;
        this.groups = groups;
    }

    /// <summary>The fused gradient norm's device table for these buffers (freed with them).</summary>
    public GradientNormCache NormCache { get; } = new();

    /// <summary>The flat gradient buffers (one per group) for clipping.</summary>
    public IReadOnlyList<Tensor> FlatGradients => [.. groups.Select(g => g.Grad)];

    /// <summary>The compiled module (for tests of its assembled source).</summary>
    internal static CudaModule Kernels => Module;

    /// <summary>Why the fused kernel is or is not in use (NVRTC compiled it, or what failed).</summary>
    internal static string KernelStatus => Module.Status;

    /// <summary>
    /// Whether a float32 group on CUDA steps through the fused kernel (true unless a test or a GPU check turns it off
    /// to compare against the op sequence); groups the kernel does not apply to take the op sequence either way.
    /// </summary>
    internal bool UseFusedKernel { get; set; } = true;

    /// <summary>Whether every group of the last <see cref="Step"/> took the fused kernel (false before the first step).</summary>
    internal bool LastStepFused { get; private set; }

    /// <summary>How many fused kernel launches all steps so far have made (one per group and step that took the kernel).</summary>
    internal long FusedLaunches { get; private set; }

    /// <summary>
    /// Whether the fused AdamW kernel applies to a group whose flat buffer is <paramref name="flat"/> (float32 on CUDA,
    /// kernel compiled), with the <paramref name="kernel"/> when it does.
    /// </summary>
    internal static bool TryGetKernel(Tensor flat, out CudaFunction kernel)
    {
        kernel = default;
        return flat.device.type == DeviceType.CUDA && flat.dtype == ScalarType.Float32
            && Module.TryGetFunction(flat, "adamw_flat_f32", out kernel);
    }

    /// <summary>
    /// Where each parameter starts in its group's flat buffer: <paramref name="counts"/>.Count + 1 running sums from 0,
    /// the last one the group's total (the kernel's offset table).
    /// </summary>
    internal static long[] Offsets(IReadOnlyList<long> counts)
    {
        var offsets = new long[counts.Count + 1];
        for (int i = 0; i < counts.Count; i++)
        {
            offsets[i + 1] = offsets[i] + counts[i];
        }

        return offsets;
    }

    /// <summary>
    /// Whether the parameters' memory ranges (<paramref name="counts"/>[i] elements of <paramref name="elementSize"/>
    /// bytes from <paramref name="pointers"/>[i]) are pairwise disjoint; empty ranges overlap nothing. The fused kernel
    /// updates every element from one thread, so two parameters sharing memory (where the op sequence updates the
    /// shared elements twice, one after the other) keep the op sequence.
    /// </summary>
    internal static bool Disjoint(IReadOnlyList<long> pointers, IReadOnlyList<long> counts, int elementSize)
    {
        var ranges = pointers.Zip(counts).Where(r => r.Second > 0).Select(r => (Start: r.First, End: r.First + (r.Second * elementSize)))
            .OrderBy(r => r.Start).ToList();
        for (int i = 1; i < ranges.Count; i++)
        {
            if (ranges[i].Start < ranges[i - 1].End)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Flattens <paramref name="optimizer"/>'s gradients and moments when it is a plain AdamW (no AMSGrad, not maximizing)
    /// whose every group holds contiguous parameters of one dtype on one device; otherwise returns null (the caller keeps
    /// stepping the optimizer itself). Existing gradients and moments are copied into the buffers.
    /// </summary>
    public static FlatAdamW? TryCreate(optim.Optimizer optimizer)
    {
        if (optimizer is not AdamW)
        {
            return null;
        }

        var states = ((OptimizerHelper)optimizer).state_dict().State.Cast<AdamW.State>().ToList();
        var paramGroups = optimizer.ParamGroups.OfType<ParamGroup>().ToList();
        if (paramGroups.Count != optimizer.ParamGroups.Count())
        {
            return null;
        }

        int index = 0;
        var layout = new List<(ParamGroup Group, List<Parameter> Parameters, List<AdamW.State> States)>();
        foreach (var g in paramGroups)
        {
            var o = (AdamW.Options)g.Options;
            var ps = g.Parameters.ToList();
            if (o.amsgrad == true || o.maximize == true || index + ps.Count > states.Count)
            {
                return null;
            }

            if (ps.Count > 0 && ps.Any(p => p.dtype != ps[0].dtype || !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(p.device, ps[0].device) || !p.is_contiguous()))
            {
                return null;
            }

            layout.Add((g, ps, states.GetRange(index, ps.Count)));
            index += ps.Count;
        }

        if (index != states.Count)
        {
            return null;
        }

        var groups = new List<Group>();
        using var guard = no_grad();
        foreach (var (g, ps, st) in layout)
        {
            if (ps.Count > 0)
            {
                groups.Add(Group.Create(g, ps, st));
            }
        }

        return new FlatAdamW(optimizer, groups);
    }

    /// <summary>
    /// One AdamW step as TorchSharp's <see cref="AdamW"/> takes it: per element <c>p ← p·(1 − lr·wd)</c>,
    /// <c>m ← m·β₁ + g·(1 − β₁)</c>, <c>v ← v·β₂ + (1 − β₂)·g·g</c>, <c>d ← √v / √(1 − β₂ᵗ) + ε</c> and
    /// <c>p ← p − (lr / (1 − β₁ᵗ))·m / d</c>, the last as libtorch's <c>addcdiv_</c> rounds it on the device
    /// (<c>(α·m)/d</c> on the CPU, <c>α·(m/d)</c> on CUDA). A float32 group on CUDA takes the same operations as
    /// one fused kernel (see <see cref="UseFusedKernel"/>). Falls back to the optimizer's own loop when the
    /// parameters' step counts differ.
    /// </summary>
    public void Step()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        using var guard = no_grad();
        LastStepFused = false;
        foreach (var g in groups)
        {
            long step = g.States[0].step;
            if (g.States.Any(s => s.step != step))
            {
                optimizer.step();
                return;
            }
        }

        bool allFused = true;
        foreach (var g in groups)
        {
            using var scope = NewDisposeScope();
            var o = (AdamW.Options)g.ParamGroup.Options;
            double lr = o.LearningRate!.Value;
            double beta1 = o.beta1!.Value;
            double beta2 = o.beta2!.Value;
            double eps = o.eps!.Value;
            double wd = o.weight_decay!.Value;
            long step = g.States[0].step + 1;
            foreach (var s in g.States)
            {
                s.step = step;
            }

            double biasCorrection1 = 1 - Math.Pow(beta1, step);
            double biasCorrection2 = 1 - Math.Pow(beta2, step);
            if (UseFusedKernel && TryGetKernel(g.Grad, out CudaFunction kernel) && g.TryGetTables(out Tensor pointers, out Tensor offsets))
            {
                // The whole step, weight decay included, in one launch.
                LaunchFused(kernel, g, pointers, offsets, lr, beta1, beta2, eps, wd, biasCorrection1, biasCorrection2);
                FusedLaunches++;
                continue;
            }

            allFused = false;
            g.EnsureFlatMoments();
            if (wd != 0)
            {
                // p.mul_(1 − lr·wd), per parameter as the optimizer does (1.0 exactly when wd = 0, so skipped then).
                foreach (var p in g.FlatParameters)
                {
                    p.mul_(1 - (lr * wd));
                }
            }

            Tensor expAvg = g.ExpAvg!;
            Tensor expAvgSq = g.ExpAvgSq!;
            expAvg.mul_(beta1).add_(g.Grad, alpha: 1 - beta1);
            expAvgSq.mul_(beta2).addcmul_(g.Grad, g.Grad, value: 1 - beta2);
            Tensor denom = (expAvgSq.sqrt() / Math.Sqrt(biasCorrection2)).add_(eps);
            double stepSize = -lr / biasCorrection1;
            Tensor delta = g.Grad.device.type == DeviceType.CUDA
                ? expAvg.div(denom).mul_(stepSize)
                : expAvg.mul(stepSize).div_(denom);
            Tensor[] pieces = delta.split(g.Counts);
            for (int i = 0; i < pieces.Length; i++)
            {
                g.FlatParameters[i].add_(pieces[i]);
            }
        }

        LastStepFused = allFused && groups.Count > 0;
    }

    /// <summary>Zeroes the gradients (one kernel per group; the gradients stay views of the buffers).</summary>
    public void ZeroGrad()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        using var guard = no_grad();
        using var scope = NewDisposeScope(); // TorchSharp's in-place ops return a new handle each
        foreach (var g in groups)
        {
            g.Grad.zero_();
        }
    }

    /// <summary>Detaches the gradients from the buffers (the parameters end with no gradient) and frees them; the moments stay the optimizer's.</summary>
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        NormCache.Dispose();
        foreach (var g in groups)
        {
            g.Dispose();
        }
    }

    // The fused step of one group: every scalar computed in double as the op sequence computes it, then cast to float32
    // as libtorch casts a CPU scalar for a float32 CUDA op; the division by √(1 − β₂ᵗ) is libtorch's product with the
    // float32 reciprocal of the float32 scalar.
    private static unsafe void LaunchFused(CudaFunction f, Group g, Tensor pointers, Tensor offsets, double lr, double beta1, double beta2,
        double eps, double wd, double biasCorrection1, double biasCorrection2)
    {
        IntPtr pgrad = CudaFunction.Pointer(g.Grad);
        IntPtr pptrs = CudaFunction.Pointer(pointers);
        IntPtr poffsets = CudaFunction.Pointer(offsets);
        int numParams = g.FlatParameters.Count;
        long n = g.Grad.numel();
        int hasDecay = wd != 0 ? 1 : 0;
        float decay = (float)(1 - (lr * wd));
        float b1 = (float)beta1;
        float oneMinusBeta1 = (float)(1 - beta1);
        float b2 = (float)beta2;
        float oneMinusBeta2 = (float)(1 - beta2);
        float invBiasCorrection2Sqrt = 1.0f / (float)Math.Sqrt(biasCorrection2);
        float epsilon = (float)eps;
        float stepSize = (float)(-lr / biasCorrection1);
        IntPtr* args = stackalloc IntPtr[14];
        args[0] = (IntPtr)(&pgrad);
        args[1] = (IntPtr)(&pptrs);
        args[2] = (IntPtr)(&poffsets);
        args[3] = (IntPtr)(&numParams);
        args[4] = (IntPtr)(&n);
        args[5] = (IntPtr)(&hasDecay);
        args[6] = (IntPtr)(&decay);
        args[7] = (IntPtr)(&b1);
        args[8] = (IntPtr)(&oneMinusBeta1);
        args[9] = (IntPtr)(&b2);
        args[10] = (IntPtr)(&oneMinusBeta2);
        args[11] = (IntPtr)(&invBiasCorrection2Sqrt);
        args[12] = (IntPtr)(&epsilon);
        args[13] = (IntPtr)(&stepSize);
        if (n > 0)
        {
            const long perBlock = (long)ThreadsPerBlock * ElementsPerThread;
            f.Launch((uint)((n + perBlock - 1) / perBlock), 1, 1, ThreadsPerBlock, args);
        }
    }

    private sealed class Group : IDisposable
    {
        // The fused kernel's device tables, made on its first step: 3·P addresses (parameters, first moments, second
        // moments) and the offsets; addresses is their host copy, compared each step so a moment replaced since (the op
        // sequence's flat buffers, see EnsureFlatMoments) rebuilds the table. tablesUnusable when two ranges share memory
        // or a moment is not a contiguous float32 tensor of its parameter's size (the group then keeps the op sequence).
        private Tensor? pointerTable;
        private Tensor? offsetTable;
        private long[]? addresses;
        private long[]? parameterAddresses;
        private bool tablesUnusable;

        private Group(ParamGroup paramGroup, List<Parameter> parameters, List<AdamW.State> states, Tensor grad, long[] counts, List<Tensor> flatParameters)
        {
            ParamGroup = paramGroup;
            Parameters = parameters;
            States = states;
            Grad = grad;
            Counts = counts;
            FlatParameters = flatParameters;
        }

        public ParamGroup ParamGroup { get; }

        public List<Parameter> Parameters { get; }

        public List<AdamW.State> States { get; }

        public Tensor Grad { get; }

        // The moments as flat buffers (the states' moments are views of them): null until the op sequence first steps the
        // group. The fused kernel reads each moment where the optimizer allocated it, so a group it steps never holds a
        // second copy of its moments, and the optimizer's per-parameter moments are never freed into the caching
        // allocator's small-block pool, which later large activations cannot reuse.
        public Tensor? ExpAvg { get; private set; }

        public Tensor? ExpAvgSq { get; private set; }

        public long[] Counts { get; }

        // Each parameter viewed as 1-D (same storage), made once.
        public List<Tensor> FlatParameters { get; }

        /// <summary>
        /// Makes the flat moment buffers, copies the moments into them and makes the states' moments views of them (once).
        /// </summary>
        public void EnsureFlatMoments()
        {
            if (ExpAvg is not null)
            {
                return;
            }

            long total = Counts.Sum();
            var first = Parameters[0];
            Tensor expAvg = zeros([total], first.dtype, first.device).DetachFromDisposeScope();
            Tensor expAvgSq = zeros([total], first.dtype, first.device).DetachFromDisposeScope();
            long offset = 0;
            for (int i = 0; i < Parameters.Count; i++)
            {
                long[] shape = Parameters[i].shape;
                var s = States[i];
                s.exp_avg = Rehome(s.exp_avg, expAvg, offset, Counts[i], shape);
                s.exp_avg_sq = Rehome(s.exp_avg_sq, expAvgSq, offset, Counts[i], shape);
                offset += Counts[i];
            }

            ExpAvg = expAvg;
            ExpAvgSq = expAvgSq;
        }

        /// <summary>
        /// The fused kernel's tables on the group's device: each parameter's address (its 1-D view's, which keeps the
        /// storage alive), then each first and each second moment's, and <see cref="Offsets"/> of <see cref="Counts"/>;
        /// false when ranges share memory or a moment is laid out otherwise than its parameter.
        /// </summary>
        public bool TryGetTables(out Tensor pointers, out Tensor offsets)
        {
            pointers = offsets = null!;
            if (tablesUnusable)
            {
                return false;
            }

            int count = Parameters.Count;
            parameterAddresses ??= [.. FlatParameters.Select(p => (long)CudaFunction.Pointer(p))];
            var now = new long[3 * count];
            parameterAddresses.CopyTo(now, 0);
            for (int i = 0; i < count; i++)
            {
                now[count + i] = (long)CudaFunction.Pointer(States[i].exp_avg);
                now[(2 * count) + i] = (long)CudaFunction.Pointer(States[i].exp_avg_sq);
            }

            if (pointerTable is null || offsetTable is null || addresses is null || !now.AsSpan().SequenceEqual(addresses))
            {
                long[] counts3 = [.. Counts, .. Counts, .. Counts];
                bool laidOut = States.Select((s, i) => Matches(s.exp_avg, i) && Matches(s.exp_avg_sq, i)).All(ok => ok);
                if (!laidOut || !Disjoint(now, counts3, sizeof(float)))
                {
                    tablesUnusable = true;
                    return false;
                }

                using var scope = NewDisposeScope();
                pointerTable?.Dispose();
                pointerTable = tensor(now).to(Grad.device).DetachFromDisposeScope();
                offsetTable ??= tensor(Offsets(Counts)).to(Grad.device).DetachFromDisposeScope();
                addresses = now;
            }

            pointers = pointerTable;
            offsets = offsetTable;
            return true;
        }

        public static Group Create(ParamGroup paramGroup, List<Parameter> parameters, List<AdamW.State> states)
        {
            long[] counts = [.. parameters.Select(p => p.numel())];
            long total = counts.Sum();
            var first = parameters[0];
            Tensor grad = zeros([total], first.dtype, first.device).DetachFromDisposeScope();
            var flat = new List<Tensor>(parameters.Count);
            long offset = 0;
            for (int i = 0; i < parameters.Count; i++)
            {
                var p = parameters[i];
                long[] shape = p.shape;
                using (Tensor slice = grad.narrow(0, offset, counts[i]))
                using (Tensor view = slice.view(shape))
                {
                    using (Tensor? existing = p.grad)
                    {
                        if (existing is not null)
                        {
                            view.copy_(existing);
                        }
                    }

                    p.grad = view; // the parameter's gradient now shares the buffer (libtorch holds its own reference)
                }

                flat.Add(p.view(-1).DetachFromDisposeScope());
                offset += counts[i];
            }

            return new Group(paramGroup, parameters, states, grad, counts, flat);
        }

        public void Dispose()
        {
            foreach (var p in Parameters)
            {
                if (!p.IsInvalid) // a parameter disposed before the optimizer has nothing left to detach
                {
                    p.grad = null;
                }
            }

            foreach (var f in FlatParameters)
            {
                f.Dispose();
            }

            Grad.Dispose();
            ExpAvg?.Dispose();
            ExpAvgSq?.Dispose();
            pointerTable?.Dispose();
            offsetTable?.Dispose();
        }

        // A moment's values copied into its slice of a flat buffer; returns the slice (shaped as the parameter) and frees
        // the moment.
        private static Tensor Rehome(Tensor moment, Tensor buffer, long offset, long count, long[] shape)
        {
            Tensor view;
            using (Tensor slice = buffer.narrow(0, offset, count))
            {
                view = slice.view(shape).DetachFromDisposeScope();
            }

            view.copy_(moment);
            moment.Dispose();
            return view;
        }

        private bool Matches(Tensor moment, int i) =>
            moment.dtype == ScalarType.Float32 && moment.numel() == Counts[i] && moment.is_contiguous()
            && Mistral.Core.Modeling.DeviceComparison.IsSameDevice(moment.device, Grad.device);
    }
}
