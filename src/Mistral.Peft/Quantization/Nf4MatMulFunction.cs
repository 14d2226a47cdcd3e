using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Quantization;

/// <summary>
/// <c>y = x @ dequant(W)^T</c> whose backward dequantizes W again (like bitsandbytes' <c>MatMul4Bit</c>), so no
/// dequantized copy of the weight stays alive between forward and backward. Gradient flows to x only.
/// Arguments of <c>apply</c>: input tensor (already in the compute dtype), <see cref="Nf4Tensor"/>, compute dtype.
/// </summary>
internal sealed class Nf4MatMulFunction : autograd.SingleTensorFunction<Nf4MatMulFunction>
{
    public override string Name => "Nf4MatMul";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var weight = (Nf4Tensor)vars[1];
        var dtype = (ScalarType)vars[2];
        ctx.save_data("weight", weight);
        ctx.save_data("dtype", dtype);
        using var scope = NewDisposeScope();
        var w = DequantizeForCompute(weight, dtype);
        return nn.functional.linear(x, w).MoveToOuterDisposeScope();
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var weight = (Nf4Tensor)ctx.get_data("weight");
        Tensor gradInput;
        using (var scope = NewDisposeScope())
        {
            var w = DequantizeForCompute(weight, grad_output.dtype);
            gradInput = grad_output.matmul(w).MoveToOuterDisposeScope();
        }

        // one gradient per argument of apply: the input, then none for the weight and the dtype
        return Mistral.Core.Modeling.GradientHandOff.Return(grad_output, [gradInput, null!, null!]);
    }

    /// <summary>bitsandbytes: dequantize to the stored dtype, then cast to the compute dtype.</summary>
    internal static Tensor DequantizeForCompute(Nf4Tensor weight, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var w = weight.Dequantize(weight.DType);
        return (w.dtype == dtype ? w : w.to(dtype)).MoveToOuterDisposeScope();
    }
}
