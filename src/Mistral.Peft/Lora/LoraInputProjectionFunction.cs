using Mistral.Core.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Lora;

/// <summary>
/// PEFT's first adapter product in training, <c>h = lora_A(dropout(x.to(float32)))</c>, with the float32 input made
/// again in backward instead of saved. Through autograd, <c>lora_A</c>'s linear keeps its float32 input alive from the
/// forward to the backward: a float32 copy of every adapted projection's input (for an all-linear 7B layer at 2,048
/// tokens about 300 MiB per recomputed layer, where the bfloat16 inputs it is made from are 100 MiB and partly shared:
/// q, k and v read the same one). This function keeps the bfloat16 input and, with dropout, the 8-byte seed of the
/// fused dropout kernel (<see cref="LoraDropoutFunction"/>, whose mask is a hash of seed and index), and in backward
/// recomputes the float32 input for the weight gradient, one projection at a time.
/// <para>Over a bfloat16 input whose shapes the fused product kernels take (<see cref="LoraDropoutFunction.CanProject"/>:
/// r ≤ 64, in a multiple of 8) and when asked for, the float32 input is never written at all: one kernel makes the
/// dropout inside the product <c>y · Aᵀ</c> (float32 sums with fmaf, split over <c>in</c> and added in a fixed order),
/// and backward's two products make it again inside them (<c>grad_A = gᵀ · y</c>) or apply its mask to their result
/// (<c>grad_x = bf16(mask · (g · A) · scale)</c>). Same mask, same float32 arithmetic per product, another summation
/// order than cuBLAS: values and gradients agree with the autograd path to float32 rounding, not bit for bit, and are
/// deterministic (no atomics). Otherwise values and gradients are bit-identical to the autograd path: the same kernels
/// make the same float32 input, and the backward issues the products that libtorch's <c>mm</c> backward issues for a
/// row-major input and a transposed weight (<c>grad_A = g.t().mm(y)</c>, <c>grad_y = g.mm(A)</c>).</para>
/// Arguments of <c>apply</c>: x (bfloat16 or float16, any leading dims), A (float32 [r, in]), dropout probability
/// (double; 0 means the cast alone), the fused dropout forward kernel (<see cref="CudaFunction"/>, when p &gt; 0), and
/// optionally whether the fused product kernels may be used (bool, default false).
/// </summary>
internal sealed class LoraInputProjectionFunction : autograd.SingleTensorFunction<LoraInputProjectionFunction>
{
    /// <inheritdoc />
    public override string Name => "LoraInputProjection";

    /// <summary>
    /// Whether the function applies: training with gradients, an input that is not already float32 (so the autograd
    /// path would save a converted copy), a float32 adapter, and with dropout the fused kernel available (its mask
    /// can be replayed from the seed; libtorch's dropout mask cannot, so it keeps the autograd path).
    /// </summary>
    public static bool Applies(Tensor x, Tensor a, double p, bool fusedDropout, out CudaFunction kernel)
    {
        kernel = default;
        if (!is_grad_enabled() || !(x.requires_grad || a.requires_grad) || a.dtype != ScalarType.Float32
            || x.dtype is not (ScalarType.BFloat16 or ScalarType.Float16))
        {
            return false;
        }

        if (p == 0)
        {
            return true;
        }

        return fusedDropout && LoraDropoutFunction.TryGetKernel(x, p, out kernel);
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var a = (Tensor)vars[1];
        double p = (double)vars[2];
        var kernel = vars.Length > 3 && vars[3] is CudaFunction k ? k : default;
        using var scope = NewDisposeScope();
        Tensor input = x.is_contiguous() ? x : x.contiguous();
        bool fusedProduct = vars.Length > 4 && vars[4] is true && LoraDropoutFunction.CanProject(input, a);
        Tensor seed;
        Tensor h;
        if (fusedProduct)
        {
            (h, seed) = LoraDropoutFunction.ProjectWithNewSeed(input, p, a);
        }
        else
        {
            Tensor y;
            if (p > 0)
            {
                (y, seed) = LoraDropoutFunction.Forward(kernel, input, p);
            }
            else
            {
                seed = LoraDropoutFunction.DrawSeed(input, p);
                y = input.to(ScalarType.Float32);
            }

            h = nn.functional.linear(y, a);
            y.Dispose(); // the point of this function: the float32 input does not outlive the forward
        }

        // TorchSharp makes the saved variables after forward returns: what this scope made must outlive it. The caller's
        // own x must not be moved: MoveToOuterDisposeScope would lift it out of the caller's scope (a handle, and with
        // it the tensor, kept past the training step — measured as 3 GB more per step on the H100).
        Tensor savedInput = ReferenceEquals(input, x) ? x : input.MoveToOuterDisposeScope();
        ctx.save_for_backward([savedInput, a, seed.MoveToOuterDisposeScope()]);
        ctx.save_data("p", p);
        ctx.save_data("kernel", kernel);
        ctx.save_data("inputGrad", x.requires_grad);
        ctx.save_data("fusedProduct", fusedProduct);
        ctx.save_data("inputs", vars.Length);
        return h.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        double p = (double)ctx.get_data("p");
        var kernel = (CudaFunction)ctx.get_data("kernel");
        bool inputGrad = (bool)ctx.get_data("inputGrad");
        bool fusedProduct = (bool)ctx.get_data("fusedProduct");
        int inputs = (int)ctx.get_data("inputs");
        Tensor? gradX = null;
        Tensor gradA;
        using (var scope = NewDisposeScope())
        {
            var saved = ctx.get_saved_variables();
            Tensor x = saved[0];
            Tensor a = saved[1];
            Tensor seed = saved[2];
            long rank = a.size(0);
            long inFeatures = a.size(1);
            Tensor g = (grad_output.is_contiguous() ? grad_output : grad_output.contiguous()).view(-1, rank);
            if (fusedProduct)
            {
                if (!LoraDropoutFunction.Aligned16(g))
                {
                    g = g.clone(); // a fresh allocation: the kernels' vector loads need 16-byte alignment
                }

                gradA = LoraDropoutFunction.ProjectionGradA(g, x.view(-1, inFeatures), seed, p).MoveToOuterDisposeScope();
                if (inputGrad)
                {
                    gradX = LoraDropoutFunction.ProjectionGradX(g, a, seed, p).view(x.shape).MoveToOuterDisposeScope();
                }
            }
            else
            {
                Tensor y = p > 0 ? LoraDropoutFunction.Replay(kernel, x, seed, p) : x.to(ScalarType.Float32);
                gradA = g.t().mm(y.view(-1, inFeatures)).MoveToOuterDisposeScope();
                y.Dispose();
                if (inputGrad) // the first layer's input (embeddings through a frozen norm) needs none
                {
                    Tensor gy = g.mm(a);
                    gradX = (p > 0 ? LoraDropoutFunction.Backward(gy, seed, p) : gy.to(x.dtype)).view(x.shape).MoveToOuterDisposeScope();
                }
            }
        }

        // One entry per argument of apply: x, A, then nothing for p, the kernel and (when passed) the fused-product flag.
        var gradients = new List<Tensor>(inputs) { gradX!, gradA };
        while (gradients.Count < inputs)
        {
            gradients.Add(null!);
        }

        return Mistral.Core.Modeling.GradientHandOff.Return(grad_output, gradients);
    }
}
