using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using CoreLinear = Mistral.Core.Modeling.Linear;

namespace Mistral.Peft.Tests.Lora;

/// <summary>
/// <see cref="LoraInputProjectionFunction"/>: in training over a bfloat16 input, <c>lora_A(x.to(float32))</c> keeps the
/// bfloat16 input instead of a float32 copy and makes the copy again in backward. Output and every gradient must equal
/// the autograd path's (the fused switches off) bit for bit.
/// </summary>
public class LoraInputProjectionTests
{
    private static LoraLinear Layer(bool fourBit)
    {
        using var gen = new Generator(3);
        var weight = randn([48, 64], generator: gen) * 0.1f;
        nn.Module<Tensor, Tensor> baseLayer;
        if (fourBit)
        {
            baseLayer = Linear4bit.FromLinear(weight.to(ScalarType.BFloat16), null, new Nf4Options { ComputeDtype = ScalarType.BFloat16 });
        }
        else
        {
            var dense = new CoreLinear(64, 48, false, ScalarType.BFloat16, CPU);
            using (no_grad())
            {
                dense.Weight.copy_(weight);
            }

            baseLayer = dense;
        }

        // Gaussian B (not zeros) so that the input gradient through the adapter is not zero.
        var lora = new LoraLinear(baseLayer, new LoraOptions { R = 8, Alpha = 16, Dropout = 0, Init = LoraInit.Gaussian }, new Generator(5));
        using (no_grad())
        {
            lora.LoraB.copy_(randn(lora.LoraB.shape, generator: new Generator(6)) * 0.05f);
        }

        lora.train();
        return lora;
    }

    private static (Tensor Y, Tensor? GradX, Tensor GradA, Tensor GradB) Run(bool fourBit, bool fused, bool inputGrad, bool fusedProduct = true)
    {
        var lora = Layer(fourBit);
        lora.UseFusedKernels = fused;
        lora.UseFusedProduct = fusedProduct;
        var x = (randn([2, 7, 64], generator: new Generator(9)) * 2).to(ScalarType.BFloat16).requires_grad_(inputGrad);
        if (fused)
        {
            LoraInputProjectionFunction.Applies(x, lora.LoraA, 0, true, out _).Should().BeTrue("the path under test must be taken");
        }

        var y = lora.forward(x);
        var weights = randn(y.shape, generator: new Generator(10)).to(ScalarType.BFloat16);
        (y.to(ScalarType.Float32) * weights.to(ScalarType.Float32)).sum().backward();
        return (y.detach(), inputGrad ? x.grad!.clone() : null, lora.LoraA.grad!.clone(), lora.LoraB.grad!.clone());
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    public void OutputAndGradientsEqualTheAutogradPathBitForBit(bool fourBit, bool inputGrad)
    {
        using var scope = NewDisposeScope();
        var (y0, gx0, ga0, gb0) = Run(fourBit, fused: false, inputGrad);
        var (y1, gx1, ga1, gb1) = Run(fourBit, fused: true, inputGrad);
        TensorChecks.Exactly(y1, y0).Should().BeTrue("output");
        TensorChecks.Exactly(ga1, ga0).Should().BeTrue("lora_A gradient");
        TensorChecks.Exactly(gb1, gb0).Should().BeTrue("lora_B gradient");
        TensorChecks.MaxAbs(ga0).Should().BeGreaterThan(0, "lora_A receives a gradient");
        if (inputGrad)
        {
            TensorChecks.Exactly(gx1!, gx0!).Should().BeTrue("input gradient");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OnTheCpuTheFusedProductSwitchChangesNothing(bool fourBit)
    {
        // The fused product kernels are CUDA-only: asked for on the CPU, the function and the layer take the path above
        // (bit for bit), and the function's extra argument gets its own (empty) gradient slot.
        using var scope = NewDisposeScope();
        var (y0, gx0, ga0, gb0) = Run(fourBit, fused: true, inputGrad: true, fusedProduct: false);
        var (y1, gx1, ga1, gb1) = Run(fourBit, fused: true, inputGrad: true, fusedProduct: true);
        TensorChecks.Exactly(y1, y0).Should().BeTrue("output");
        TensorChecks.Exactly(gx1!, gx0!).Should().BeTrue("input gradient");
        TensorChecks.Exactly(ga1, ga0).Should().BeTrue("lora_A gradient");
        TensorChecks.Exactly(gb1, gb0).Should().BeTrue("lora_B gradient");

        using var a = new TorchSharp.Modules.Parameter(randn(8, 64, generator: new Generator(1)));
        var x = randn([2, 7, 64], generator: new Generator(2)).to(ScalarType.BFloat16);
        LoraDropoutFunction.CanProject(x, a).Should().BeFalse("the fused product kernels run on CUDA only");
        LoraOutputCombineFunction.Applies(x, zeros([2, 7, 8]), zeros([64, 8])).Should().BeFalse("the fused output kernel runs on CUDA only");
        var xg = x.requires_grad_(true);
        LoraInputProjectionFunction.apply(xg, a, 0.0, default(Mistral.Core.Cuda.CudaFunction), true).sum().backward();
        xg.grad.Should().NotBeNull();
        a.grad.Should().NotBeNull();
    }

    [Fact]
    public void LeavesTheCallersInputInTheCallersScope()
    {
        // The function once lifted its own input out of the caller's dispose scope when saving it: every LoRA layer's
        // input then outlived the training step (3 GB more per step for Mistral-7B on an H100).
        using var outer = NewDisposeScope();
        using var a = new TorchSharp.Modules.Parameter(randn(4, 16, generator: new Generator(1)));
        Tensor x;
        using (var inner = NewDisposeScope())
        {
            x = randn([3, 16], generator: new Generator(2)).to(ScalarType.BFloat16).requires_grad_(true);
            var h = LoraInputProjectionFunction.apply(x, a, 0.0, default(Mistral.Core.Cuda.CudaFunction));
            h.sum().backward();
            a.grad.Should().NotBeNull();
        }

        x.IsInvalid.Should().BeTrue("the input belongs to the scope it was made in and goes with it");
    }

    [Fact]
    public void DoesNotApplyWhereTheAutogradPathSavesNoCopyOrCannotReplayTheMask()
    {
        using var scope = NewDisposeScope();
        using var a = new TorchSharp.Modules.Parameter(zeros(4, 16));
        var bf16 = zeros([3, 16], ScalarType.BFloat16).requires_grad_(true);
        LoraInputProjectionFunction.Applies(bf16, a, 0, true, out _).Should().BeTrue();
        LoraInputProjectionFunction.Applies(zeros([3, 16]).requires_grad_(true), a, 0, true, out _).Should().BeFalse("a float32 input is saved without a copy");
        LoraInputProjectionFunction.Applies(bf16, a, 0.1, true, out _).Should().BeFalse("libtorch's CPU dropout mask cannot be replayed");
        using (no_grad())
        {
            LoraInputProjectionFunction.Applies(bf16, a, 0, true, out _).Should().BeFalse("nothing is saved without gradients");
        }
    }
}
