using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Cuda;

/// <summary>RMSNorm with a frozen weight: fused forward, fused input gradient. <c>apply(x, weight, eps)</c>.</summary>
internal sealed class RmsNormFunction : autograd.SingleTensorFunction<RmsNormFunction>
{
    /// <inheritdoc />
    public override string Name => "FusedRmsNorm";

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var weight = (Tensor)vars[1];
        double eps = (double)vars[2];
        ctx.save_for_backward([x, weight]);
        ctx.save_data("eps", eps);
        return FusedOps.RmsNormForward(FusedOps.Function(x, "rms_norm_bf16"), x, weight, eps);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        Tensor gradX;
        using (var scope = NewDisposeScope())
        {
            var saved = ctx.get_saved_variables();
            double eps = (double)ctx.get_data("eps");
            gradX = FusedOps.RmsNormBackward(saved[0], saved[1], grad_output, eps).MoveToOuterDisposeScope();
        }

        return Modeling.GradientHandOff.Return(grad_output, [gradX, null!, null!]);
    }
}

/// <summary><c>silu(gate) · up</c> with one fused backward kernel. <c>apply(gate, up)</c> (contiguous [rows, I]).</summary>
internal sealed class SiluMulFunction : autograd.SingleTensorFunction<SiluMulFunction>
{
    /// <inheritdoc />
    public override string Name => "FusedSiluMul";

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var gate = (Tensor)vars[0];
        var up = (Tensor)vars[1];
        ctx.save_for_backward([gate, up]);
        return FusedOps.SiluMulForward(FusedOps.Function(gate, "silu_mul_bf16"), gate, up);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        Tensor gg;
        Tensor gu;
        using (var scope = NewDisposeScope())
        {
            var saved = ctx.get_saved_variables();
            (gg, gu) = FusedOps.SiluMulBackward(saved[0], saved[1], grad_output);
            gg.MoveToOuterDisposeScope();
            gu.MoveToOuterDisposeScope();
        }

        return Modeling.GradientHandOff.Return(grad_output, [gg, gu]);
    }
}

/// <summary>
/// Training's rotary embedding of one projection, fused forward and input gradient:
/// <c>apply(xp [B, T, heads·D], cos [B, T, D], sin, heads, headDim)</c> → [B, heads, T, D] contiguous.
/// </summary>
internal sealed class RotaryFunction : autograd.SingleTensorFunction<RotaryFunction>
{
    /// <inheritdoc />
    public override string Name => "FusedRotary";

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var xp = (Tensor)vars[0];
        var cos = (Tensor)vars[1];
        var sin = (Tensor)vars[2];
        int heads = (int)vars[3];
        int headDim = (int)vars[4];
        ctx.save_for_backward([cos, sin]);
        ctx.save_data("heads", heads);
        ctx.save_data("headDim", headDim);
        return FusedOps.RotaryForward(FusedOps.Function(xp, "rope_split_bf16"), xp, cos, sin, heads, headDim);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        Tensor gradX;
        using (var scope = NewDisposeScope())
        {
            var saved = ctx.get_saved_variables();
            gradX = FusedOps.RotaryBackward(grad_output, saved[0], saved[1], (int)ctx.get_data("heads"), (int)ctx.get_data("headDim"))
                .MoveToOuterDisposeScope();
        }

        return Modeling.GradientHandOff.Return(grad_output, [gradX, null!, null!, null!, null!]);
    }
}
