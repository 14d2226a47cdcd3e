using Mistral.Core.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Lora;

/// <summary>
/// LoRA's second product and the combine, fused over a bfloat16 base on CUDA: <c>out = bf16(float(result) + (h · Bᵀ) ·
/// scaling)</c> (over a 4-bit base, as PEFT's bitsandbytes layer does, the update rounded to bf16 before the add) in one
/// kernel that never writes the float32 update <c>u = h · Bᵀ</c> [tokens, out] (<see cref="LoraCombineFunction"/> reads
/// it back; cuBLAS writes it). Backward reads the bf16 output gradient directly: <c>grad_h = (grad · s) · B</c> and
/// <c>grad_B = (grad · s)ᵀ · h</c> through the fused first-product kernels (<see cref="LoraDropoutFunction.ScaledProject"/>,
/// <see cref="LoraDropoutFunction.ScaledGradA"/>) with no mask, where libtorch writes <c>grad · s</c> in float32 and
/// cuBLAS reads it twice. Same float32 operations per element as the unfused path, another summation order: equal to
/// float32 rounding, deterministic. Arguments of <c>apply</c>: result (bf16 [.., out]), h = A(dropout(x)) (float32
/// [.., r]), B (float32 [out, r]), scaling (double), whether the update is rounded to bf16 first (bool).
/// </summary>
internal sealed class LoraOutputCombineFunction : autograd.SingleTensorFunction<LoraOutputCombineFunction>
{
    /// <inheritdoc />
    public override string Name => "LoraOutputCombine";

    /// <summary>
    /// Whether the fused second product applies: result bfloat16 and contiguous on CUDA with out-features a multiple of 8;
    /// h float32, contiguous, with result's leading shape and r ≤ 64 columns; B float32, contiguous, [out, r], on the same
    /// device; all 16-byte aligned; the kernels compiled.
    /// </summary>
    public static bool Applies(Tensor result, Tensor h, Tensor b)
    {
        if (result.device.type != DeviceType.CUDA || result.dtype != ScalarType.BFloat16 || h.dtype != ScalarType.Float32
            || b.dtype != ScalarType.Float32 || b.dim() != 2 || result.dim() < 1 || h.dim() != result.dim()
            || !result.is_contiguous() || !h.is_contiguous() || !b.is_contiguous()
            || !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(result.device, h.device)
            || !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(result.device, b.device))
        {
            return false;
        }

        long n = b.size(0);
        long r = b.size(1);
        if (result.size(-1) != n || h.size(-1) != r || n % 8 != 0 || n > int.MaxValue || r is < 1 or > LoraDropoutFunction.MaxProjectionRank
            || result.numel() == 0 || result.numel() / n != h.numel() / r)
        {
            return false;
        }

        return LoraDropoutFunction.Aligned16(result) && LoraDropoutFunction.Aligned16(h) && LoraDropoutFunction.Aligned16(b)
            && LoraCombineFunction.Kernels.TryGetFunction(result, "lora_b_combine", out _)
            && LoraDropoutFunction.Kernels.TryGetFunction(result, "lora_xa", out _);
    }

    /// <summary>The fused second product and combine without autograd (requires <see cref="Applies"/>).</summary>
    public static Tensor Forward(Tensor result, Tensor h, Tensor b, double scaling, bool roundUpdate)
    {
        using var scope = NewDisposeScope();
        Tensor bt = b.detach().t().contiguous(); // [r, out]: the kernel reads a row of Bᵀ per rank index
        Tensor output = empty_like(result);
        Launch(result, h, bt, (float)scaling, roundUpdate, output);
        return output.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var result = (Tensor)vars[0];
        var h = (Tensor)vars[1];
        var b = (Tensor)vars[2];
        double scaling = (double)vars[3];
        bool roundUpdate = (bool)vars[4];
        ctx.save_for_backward([h, b]);
        ctx.save_data("scaling", scaling);
        ctx.save_data("gradH", h.requires_grad);
        ctx.save_data("gradB", b.requires_grad);
        return Forward(result, h, b, scaling, roundUpdate);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        float scale = (float)(double)ctx.get_data("scaling");
        bool needH = (bool)ctx.get_data("gradH");
        bool needB = (bool)ctx.get_data("gradB");
        Tensor gradResult;
        Tensor? gradH = null;
        Tensor? gradB = null;
        using (var scope = NewDisposeScope())
        {
            var saved = ctx.get_saved_variables();
            Tensor h = saved[0];
            Tensor b = saved[1];
            long n = b.size(0);
            long r = b.size(1);
            Tensor g = (grad_output.is_contiguous() ? grad_output : grad_output.contiguous()).view(-1, n);
            if (!LoraDropoutFunction.Aligned16(g))
            {
                g = g.clone(); // a fresh allocation: the kernels' vector loads need 16-byte alignment
            }

            if (needH)
            {
                // grad_h = (grad · s) · B: the first-product kernel over grad with A = Bᵀ [r, out] and no mask.
                gradH = LoraDropoutFunction.ScaledProject(g, scale, b.t().contiguous()).view(h.shape).MoveToOuterDisposeScope();
            }

            if (needB)
            {
                // grad_B = (grad · s)ᵀ · h = (hᵀ · (grad · s))ᵀ: the first product's weight-gradient kernel, transposed.
                gradB = LoraDropoutFunction.ScaledGradA(h.view(-1, r), g, scale).t().contiguous().MoveToOuterDisposeScope();
            }

            gradResult = grad_output.detach().MoveToOuterDisposeScope();
        }

        return Mistral.Core.Modeling.GradientHandOff.Return(grad_output, [gradResult, gradH!, gradB!, null!, null!]);
    }

    private static unsafe void Launch(Tensor result, Tensor h, Tensor bt, float scale, bool roundUpdate, Tensor output)
    {
        CudaFunction f = LoraCombineFunction.Kernels.GetFunction(result, "lora_b_combine");
        int n = (int)bt.size(1);
        int r = (int)bt.size(0);
        long rows = result.numel() / n;
        IntPtr ph = CudaFunction.Pointer(h);
        IntPtr pb = CudaFunction.Pointer(bt);
        IntPtr pr = CudaFunction.Pointer(result);
        IntPtr po = CudaFunction.Pointer(output);
        int round = roundUpdate ? 1 : 0;
        IntPtr* args = stackalloc IntPtr[9];
        args[0] = (IntPtr)(&ph);
        args[1] = (IntPtr)(&pb);
        args[2] = (IntPtr)(&pr);
        args[3] = (IntPtr)(&scale);
        args[4] = (IntPtr)(&round);
        args[5] = (IntPtr)(&po);
        args[6] = (IntPtr)(&rows);
        args[7] = (IntPtr)(&n);
        args[8] = (IntPtr)(&r);
        f.Launch((uint)((n + 511) / 512), (uint)((rows + 15) / 16), 1, 256, args);
    }
}
