using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Mistral.Core.Modeling;

/// <summary>
/// Activation checkpointing of one decoder layer, as PyTorch's reentrant <c>torch.utils.checkpoint</c>: the forward
/// runs without grad (no activations kept) and saves only the layer input, the attention context tensors and the CPU
/// random-generator state; backward re-runs the layer with grad on a detached copy of the input under the same random
/// state, back-propagates the incoming gradient through it (accumulating parameter gradients exactly as an ordinary
/// backward does) and returns the input's gradient.
/// </summary>
/// <remarks>
/// <para>The saved tensors are libtorch saved variables owned by the autograd node: they live as long as the graph and
/// are released with it, whether or not backward ever runs, so the forward's dispose scope may free its managed handles.</para>
/// <para>Arguments: <c>[input, anchor or null, layer, context, call]</c>. When the input needs no gradient (frozen
/// embeddings, LoRA) the node would not be part of the graph, so a zero-element leaf that requires grad (the anchor)
/// is passed to make it part of it; it never receives a gradient.</para>
/// <para>Random state: on CPU the default generator's state is saved before the forward, set again for the
/// recomputation and the state current before the recomputation restored afterwards, so the recomputation sees the
/// same dropout masks and the random stream after a step is the one a run without checkpointing leaves. TorchSharp
/// 0.107 cannot read or set a CUDA generator's state, so on CUDA a seed drawn from the CPU generator is given to
/// every CUDA generator (<c>torch.cuda.manual_seed_all</c>) before the forward and again before the recomputation:
/// forward and recomputation see the same masks, but the masks (and the CUDA random state afterwards) differ from a
/// run without checkpointing.</para>
/// <para>An exception thrown by the recomputation crosses libtorch's native autograd engine; like any TorchSharp
/// custom autograd function, it ends the process (with its message) rather than surfacing from <c>backward()</c>.</para>
/// </remarks>
internal sealed class CheckpointedLayerFunction : SingleTensorFunction<CheckpointedLayerFunction>
{
    private const string CallKey = "call";
    private const string CausalKey = "causal";
    private const int ArgumentCount = 5;

    /// <inheritdoc />
    public override string Name => nameof(CheckpointedLayerFunction);

    /// <summary>Runs <paramref name="layer"/> on <paramref name="x"/> with checkpointing; grad must be enabled.</summary>
    internal static Tensor Apply(MistralDecoderLayer layer, Tensor x, AttentionContext context)
    {
        bool inputRequiresGrad = x.requires_grad;
        if (!inputRequiresGrad && !layer.parameters().Any(p => p.requires_grad))
        {
            // Nothing below this layer needs a gradient: no graph would be built anyway.
            return layer.forward(x, context);
        }

        long? acceleratorSeed = x.device_type switch
        {
            DeviceType.CPU => null,
            DeviceType.CUDA => DrawSeed(),
            _ => throw new NotSupportedException(
                $"Gradient checkpointing supports CPU and CUDA tensors; the hidden states are on {x.device}. Set GradientCheckpointing = false."),
        };

        using var scope = NewDisposeScope();
        // TorchSharp allocates an empty_like of the output per node for its own bookkeeping; the scope frees it now
        // instead of at the end of the model's forward.
        Tensor? anchor = inputRequiresGrad ? null : empty(0, ScalarType.Float32, x.device).requires_grad_(true);
        var call = new CheckpointCall(layer, inputRequiresGrad, acceleratorSeed, ArgumentCount);
        Tensor y = apply(x, anchor!, layer, context, call);
        return y.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var layer = (MistralDecoderLayer)vars[2];
        var context = (AttentionContext)vars[3];
        var call = (CheckpointCall)vars[4];

        // Called by TorchSharp under no_grad: the layer keeps no activations.
        using var generator = Generator.Default;
        Tensor cpuState = generator.get_state();
        if (call.AcceleratorSeed is long seed)
        {
            cuda.manual_seed_all(seed);
        }

        Tensor y = layer.forward(x, context);
        ctx.save_for_backward([x, context.Cos, context.Sin, context.Mask, cpuState]);
        ctx.save_data(CallKey, call);
        ctx.save_data(CausalKey, context.IsCausal);
        return y;
    }

    /// <inheritdoc />
    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output)
    {
        var call = (CheckpointCall)ctx.get_data(CallKey);
        Tensor? inputGrad = null;
        using (var scope = NewDisposeScope())
        {
            List<Tensor> saved = ctx.get_saved_variables();
            using var generator = Generator.Default;
            Tensor stateBefore = generator.get_state();
            generator.set_state(saved[4]);
            if (call.AcceleratorSeed is long seed)
            {
                cuda.manual_seed_all(seed);
            }

            try
            {
                using var grad = enable_grad();
                Tensor input = saved[0].detach().requires_grad_(call.InputRequiresGrad);
                var context = new AttentionContext(saved[1], saved[2], saved[3], null, null, (bool)ctx.get_data(CausalKey));
                Tensor y = call.Layer.forward(input, context);
                if (y.requires_grad)
                {
                    autograd.backward([y], [grad_output]);
                }

                inputGrad = call.InputRequiresGrad ? input.grad?.MoveToOuterDisposeScope() : null;
            }
            finally
            {
                generator.set_state(stateBefore);
            }
        }

        // The incoming gradient's handle goes now, the returned one at the next backward on this thread (libtorch keeps
        // its own references), so a layer's input gradient does not outlive the next layer's backward.
        var grads = new List<Tensor>(call.ArgumentCount) { inputGrad! };
        for (int i = 1; i < call.ArgumentCount; i++)
        {
            grads.Add(null!);
        }

        return GradientHandOff.Return(grad_output, grads);
    }

    private static long DrawSeed()
    {
        using Tensor seed = randint(0, long.MaxValue, [1], ScalarType.Int64, CPU);
        return seed.item<long>();
    }
}
