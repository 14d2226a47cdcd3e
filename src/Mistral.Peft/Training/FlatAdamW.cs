using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// TorchSharp's <see cref="AdamW"/> step, run over one flat buffer per parameter group instead of parameter by parameter.
/// The gradients and the AdamW moments of a group are views into three flat buffers, so the moment updates, the
/// denominator and the step are about ten kernels per group; only the final <c>p += Δ</c> (and a non-zero weight decay)
/// still touches each parameter. LoRA trains hundreds of small tensors (448 for r 16 on all projections of Mistral-7B),
/// where TorchSharp's per-parameter loop launches nine kernels each and dominates the host's time per step.
/// The arithmetic per element is the optimizer's own, in its order (see <see cref="Step"/>), and the optimizer object
/// keeps owning its state (the moments are views), so checkpoints and resume read and write it as before.
/// </summary>
internal sealed class FlatAdamW : IDisposable
{
    private readonly optim.Optimizer optimizer;
    private readonly List<Group> groups;
    private bool disposed;

    private FlatAdamW(optim.Optimizer optimizer, List<Group> groups)
    {
        this.optimizer = optimizer;
        this.groups = groups;
    }

    /// <summary>The flat gradient buffers (one per group) for clipping.</summary>
    public IReadOnlyList<Tensor> FlatGradients => [.. groups.Select(g => g.Grad)];

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
    /// (<c>(α·m)/d</c> on the CPU, <c>α·(m/d)</c> on CUDA). Falls back to the optimizer's own loop when the
    /// parameters' step counts differ.
    /// </summary>
    public void Step()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        using var guard = no_grad();
        foreach (var g in groups)
        {
            long step = g.States[0].step;
            if (g.States.Any(s => s.step != step))
            {
                optimizer.step();
                return;
            }
        }

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

            if (wd != 0)
            {
                // p.mul_(1 − lr·wd), per parameter as the optimizer does (1.0 exactly when wd = 0, so skipped then).
                foreach (var p in g.FlatParameters)
                {
                    p.mul_(1 - (lr * wd));
                }
            }

            double biasCorrection1 = 1 - Math.Pow(beta1, step);
            double biasCorrection2 = 1 - Math.Pow(beta2, step);
            g.ExpAvg.mul_(beta1).add_(g.Grad, alpha: 1 - beta1);
            g.ExpAvgSq.mul_(beta2).addcmul_(g.Grad, g.Grad, value: 1 - beta2);
            Tensor denom = (g.ExpAvgSq.sqrt() / Math.Sqrt(biasCorrection2)).add_(eps);
            double stepSize = -lr / biasCorrection1;
            Tensor delta = g.Grad.device.type == DeviceType.CUDA
                ? g.ExpAvg.div(denom).mul_(stepSize)
                : g.ExpAvg.mul(stepSize).div_(denom);
            Tensor[] pieces = delta.split(g.Counts);
            for (int i = 0; i < pieces.Length; i++)
            {
                g.FlatParameters[i].add_(pieces[i]);
            }
        }
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
        foreach (var g in groups)
        {
            g.Dispose();
        }
    }

    private sealed class Group : IDisposable
    {
        private Group(ParamGroup paramGroup, List<Parameter> parameters, List<AdamW.State> states, Tensor grad, Tensor expAvg, Tensor expAvgSq, long[] counts, List<Tensor> flatParameters)
        {
            ParamGroup = paramGroup;
            Parameters = parameters;
            States = states;
            Grad = grad;
            ExpAvg = expAvg;
            ExpAvgSq = expAvgSq;
            Counts = counts;
            FlatParameters = flatParameters;
        }

        public ParamGroup ParamGroup { get; }

        public List<Parameter> Parameters { get; }

        public List<AdamW.State> States { get; }

        public Tensor Grad { get; }

        public Tensor ExpAvg { get; }

        public Tensor ExpAvgSq { get; }

        public long[] Counts { get; }

        // Each parameter viewed as 1-D (same storage), made once.
        public List<Tensor> FlatParameters { get; }

        public static Group Create(ParamGroup paramGroup, List<Parameter> parameters, List<AdamW.State> states)
        {
            long[] counts = [.. parameters.Select(p => p.numel())];
            long total = counts.Sum();
            var first = parameters[0];
            Tensor grad = zeros([total], first.dtype, first.device).DetachFromDisposeScope();
            Tensor expAvg = zeros([total], first.dtype, first.device).DetachFromDisposeScope();
            Tensor expAvgSq = zeros([total], first.dtype, first.device).DetachFromDisposeScope();
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

                var s = states[i];
                Tensor m;
                using (Tensor mSlice = expAvg.narrow(0, offset, counts[i]))
                {
                    m = mSlice.view(shape).DetachFromDisposeScope();
                }

                m.copy_(s.exp_avg);
                s.exp_avg.Dispose();
                s.exp_avg = m;
                Tensor v;
                using (Tensor vSlice = expAvgSq.narrow(0, offset, counts[i]))
                {
                    v = vSlice.view(shape).DetachFromDisposeScope();
                }

                v.copy_(s.exp_avg_sq);
                s.exp_avg_sq.Dispose();
                s.exp_avg_sq = v;
                flat.Add(p.view(-1).DetachFromDisposeScope());
                offset += counts[i];
            }

            return new Group(paramGroup, parameters, states, grad, expAvg, expAvgSq, counts, flat);
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
            ExpAvg.Dispose();
            ExpAvgSq.Dispose();
        }
    }
}
