using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using CoreLinear = Mistral.Core.Modeling.Linear;

namespace Mistral.Peft.Tests.Lora;

// Dropout draws from the default CPU generator, which other tests reseed: run alone.
[Collection("default generator")]
public class LoraLinearTests
{
    private static CoreLinear Dense(long inF, long outF, ScalarType dtype = ScalarType.Float32, ulong seed = 1)
    {
        var layer = new CoreLinear(inF, outF, false, dtype, CPU);
        using var gen = new Generator(seed);
        using (no_grad())
        {
            layer.Weight.copy_(randn([outF, inF], generator: gen) * 0.1f);
        }

        return layer;
    }

    [Fact]
    public void DefaultInitIsKaimingUniformWithBoundOneOverSqrtFanInAndZeroB()
    {
        using var scope = NewDisposeScope();
        var lora = new LoraLinear(Dense(400, 50), new LoraOptions { R = 16 }, new Generator(7));
        lora.LoraA.shape.Should().Equal(16L, 400L);
        lora.LoraB.shape.Should().Equal(50L, 16L);
        lora.LoraA.dtype.Should().Be(ScalarType.Float32);
        double bound = 1.0 / Math.Sqrt(400); // gain √(2/(1+5)) · √(3/400)
        double maxAbs = lora.LoraA.abs().max().item<float>();
        maxAbs.Should().BeLessThanOrEqualTo(bound).And.BeGreaterThan(0.99 * bound);
        // U(-b, b) has variance b²/3.
        double variance = lora.LoraA.var().item<float>();
        variance.Should().BeApproximately(bound * bound / 3, 0.05 * bound * bound / 3);
        lora.LoraB.abs().max().item<float>().Should().Be(0f);
        lora.LoraA.requires_grad.Should().BeTrue();
        lora.BaseLayer.parameters().Should().OnlyContain(p => !p.requires_grad);
    }

    [Fact]
    public void GaussianInitHasStandardDeviationOneOverR()
    {
        using var scope = NewDisposeScope();
        var lora = new LoraLinear(Dense(2000, 8), new LoraOptions { R = 4, Init = LoraInit.Gaussian }, new Generator(7));
        double std = lora.LoraA.std().item<float>();
        std.Should().BeApproximately(0.25, 0.01);
        lora.LoraB.abs().max().item<float>().Should().Be(0f);
    }

    [Fact]
    public void LinearDefaultInitDrawsBothMatricesOverTheirOwnFanIn()
    {
        using var scope = NewDisposeScope();
        var lora = new LoraLinear(Dense(64, 300), new LoraOptions { R = 4, Init = LoraInit.LinearDefault }, new Generator(7));
        lora.LoraA.abs().max().item<float>().Should().BeLessThanOrEqualTo(0.125f).And.BeGreaterThan(0.12f);
        lora.LoraB.abs().max().item<float>().Should().BeLessThanOrEqualTo(0.5f).And.BeGreaterThan(0.49f);
    }

    [Fact]
    public void SameSeedSameAdapter()
    {
        using var scope = NewDisposeScope();
        var o = new LoraOptions { R = 4, Init = LoraInit.LinearDefault };
        var a = new LoraLinear(Dense(16, 8), o, new Generator(3));
        var b = new LoraLinear(Dense(16, 8), o, new Generator(3));
        TensorChecks.Exactly(a.LoraA, b.LoraA).Should().BeTrue();
        TensorChecks.Exactly(a.LoraB, b.LoraB).Should().BeTrue();
    }

    [Fact]
    public void ForwardIsBasePlusScaledLowRankUpdate()
    {
        using var scope = NewDisposeScope();
        var dense = Dense(24, 12);
        var lora = new LoraLinear(dense, new LoraOptions { R = 4, Alpha = 12, Init = LoraInit.LinearDefault }, new Generator(5));
        lora.Scaling.Should().Be(3.0);
        var x = randn(2, 5, 24, generator: new Generator(9));
        var y = lora.forward(x);
        var expected = x.matmul(dense.Weight.t()) + (x.matmul(lora.LoraA.t()).matmul(lora.LoraB.t()) * 3.0);
        TensorChecks.MaxAbs(y - expected).Should().BeLessThanOrEqualTo(1e-6f);
    }

    [Fact]
    public void Bf16BaseAddsTheFloat32BranchBeforeCastingBackLikePeftsLinear()
    {
        using var scope = NewDisposeScope();
        var dense = Dense(32, 16, ScalarType.BFloat16);
        var lora = new LoraLinear(dense, new LoraOptions { R = 4, Alpha = 8, Init = LoraInit.LinearDefault }, new Generator(5));
        var x = randn(3, 32, generator: new Generator(9)).to(ScalarType.BFloat16);
        var y = lora.forward(x);
        y.dtype.Should().Be(ScalarType.BFloat16);
        var baseOut = nn.functional.linear(x, dense.Weight);
        var xf = x.to(ScalarType.Float32);
        var branch = nn.functional.linear(nn.functional.linear(xf, lora.LoraA), lora.LoraB) * 2.0;
        var expected = (baseOut.to(ScalarType.Float32) + branch).to(ScalarType.BFloat16);
        TensorChecks.Exactly(y, expected).Should().BeTrue();
    }

    [Fact]
    public void FourBitBaseCastsTheBranchToTheOutputDtypeBeforeAddingLikePeftsBnbLayer()
    {
        using var scope = NewDisposeScope();
        var weight = randn([16, 64], generator: new Generator(2)) * 0.1f;
        var q = Linear4bit.FromLinear(weight.to(ScalarType.BFloat16), null, new Nf4Options { ComputeDtype = ScalarType.BFloat16 });
        var lora = new LoraLinear(q, new LoraOptions { R = 4, Alpha = 8, Init = LoraInit.LinearDefault }, new Generator(5));
        lora.IsQuantizedBase.Should().BeTrue();
        var x = randn(3, 64, generator: new Generator(9)).to(ScalarType.BFloat16);
        var y = lora.forward(x);
        var baseOut = q.forward(x);
        var branch = (nn.functional.linear(nn.functional.linear(x.to(ScalarType.Float32), lora.LoraA), lora.LoraB) * 2.0).to(ScalarType.BFloat16);
        TensorChecks.Exactly(y, baseOut + branch).Should().BeTrue();
    }

    [Fact]
    public void DropoutActsOnlyOnTheBranchAndOnlyInTraining()
    {
        using var scope = NewDisposeScope();
        var dense = Dense(32, 16);
        var lora = new LoraLinear(dense, new LoraOptions { R = 4, Dropout = 0.5, Init = LoraInit.LinearDefault }, new Generator(5));
        // 4096 rows: the dropout masks come from the process-wide generator (shared with tests running in parallel), so the
        // ratio below is random; with this many rows it concentrates at ≈ √2 (p = 0.5 adds as much variance as signal),
        // far inside the bounds (64 rows put 0.5 % of draws outside them).
        var x = randn(4096, 32, generator: new Generator(9));
        var baseOut = x.matmul(dense.Weight.t());
        var branch = x.matmul(lora.LoraA.t()).matmul(lora.LoraB.t()) * lora.Scaling;

        lora.eval();
        TensorChecks.MaxAbs(lora.forward(x) - (baseOut + branch)).Should().BeLessThanOrEqualTo(1e-6f);
        TensorChecks.Exactly(lora.forward(x), lora.forward(x)).Should().BeTrue();

        lora.train();
        var y1 = lora.forward(x);
        var y2 = lora.forward(x);
        TensorChecks.Exactly(y1, y2).Should().BeFalse("dropout draws a new mask each call in training");
        // The branch is B·A·dropout(x): the result stays base + a branch of the same scale, never a dropped base.
        double ratio = (y1 - baseOut).norm().item<float>() / branch.norm().item<float>();
        ratio.Should().BeInRange(0.6, 1.6);
    }

    [Fact]
    public void RejectsNonLinearAndNestedLayers()
    {
        using var scope = NewDisposeScope();
        var notLinear = nn.ReLU();
        FluentActions.Invoking(() => new LoraLinear(notLinear, new LoraOptions())).Should().Throw<ArgumentException>().WithMessage("*ILinearLayer*ReLU*");
        var lora = new LoraLinear(Dense(8, 8), new LoraOptions { R = 2 });
        FluentActions.Invoking(() => new LoraLinear(lora, new LoraOptions())).Should().Throw<ArgumentException>().WithMessage("*nested*");
    }

    [Fact]
    public void GradientsMatchTheAnalyticFormulaComputedInFloat64()
    {
        // L = Σ G ⊙ y with y = x Wᵀ + s (x Aᵀ) Bᵀ: dL/dB = s Gᵀ (x Aᵀ), dL/dA = s (G B)ᵀ x.
        using var scope = NewDisposeScope();
        var dense = Dense(40, 24);
        var lora = new LoraLinear(dense, new LoraOptions { R = 6, Alpha = 9, Init = LoraInit.LinearDefault }, new Generator(5));
        var x = randn(7, 40, generator: new Generator(9));
        var g = randn(7, 24, generator: new Generator(10));
        var loss = (lora.forward(x) * g).sum();
        loss.backward();
        dense.Weight.grad.Should().BeNull();

        double s = 1.5;
        var x64 = x.to(ScalarType.Float64);
        var g64 = g.to(ScalarType.Float64);
        var a64 = lora.LoraA.detach().to(ScalarType.Float64);
        var b64 = lora.LoraB.detach().to(ScalarType.Float64);
        var gradB = g64.t().matmul(x64.matmul(a64.t())) * s;
        var gradA = g64.matmul(b64).t().matmul(x64) * s;
        RelativeError(lora.LoraB.grad!, gradB).Should().BeLessThanOrEqualTo(1e-6);
        RelativeError(lora.LoraA.grad!, gradA).Should().BeLessThanOrEqualTo(1e-6);
    }

    internal static double RelativeError(Tensor actual, Tensor expected)
    {
        var e = expected.to(ScalarType.Float64);
        return (actual.to(ScalarType.Float64) - e).norm().item<double>() / e.norm().item<double>();
    }
}
