using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Quantization;

public class Linear4bitTests
{
    [Fact]
    public void ForwardEqualsInputTimesDequantizedWeightTransposedInFloat32()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(11);
        var weight = randn(48, 96, generator: gen) * 0.05f;
        var bias = randn(48, generator: gen);
        var options = new Nf4Options { ComputeDtype = ScalarType.Float32 };
        using var layer = Linear4bit.FromLinear(weight, bias, options);
        layer.InFeatures.Should().Be(96);
        layer.OutFeatures.Should().Be(48);
        var x = randn(3, 5, 96, generator: gen);
        var y = layer.forward(x);
        using var nf4 = Nf4Tensor.Quantize(weight, options);
        var expected = x.matmul(nf4.Dequantize(ScalarType.Float32).t()) + bias;
        y.shape.Should().Equal([3L, 5L, 48L]);
        var maxDiff = (y - expected).abs().max().item<float>();
        maxDiff.Should().BeLessThanOrEqualTo(1e-6f);
    }

    [Fact]
    public void Bf16ComputeCastsInputAndReturnsInputDtype()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(5);
        var weight = randn(32, 64, generator: gen);
        using var layer = Linear4bit.FromLinear(weight);
        var x = randn(4, 64, generator: gen);
        var y = layer.forward(x);
        y.dtype.Should().Be(ScalarType.Float32);
        using var nf4 = Nf4Tensor.Quantize(weight);
        var expected = x.to(ScalarType.BFloat16).matmul(nf4.Dequantize(ScalarType.Float32).to(ScalarType.BFloat16).t()).to(ScalarType.Float32);
        (y - expected).abs().max().item<float>().Should().Be(0f);
    }

    [Fact]
    public void GradientReachesInputNotWeightAndNothingTrains()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        var dense = nn.Linear(64, 32, hasBias: true);
        using var layer = Linear4bit.FromLinear(dense, new Nf4Options { ComputeDtype = ScalarType.Float32 });
        layer.parameters().Where(p => p.requires_grad).Should().BeEmpty();
        layer.named_buffers().Select(b => b.name).Should().Contain(["weight", "weight_absmax", "weight_nested_absmax", "weight_nested_quant_map", "weight_nested_offset"]);
        var x = randn(6, 64, generator: gen).requires_grad_(true);
        var y = layer.forward(x);
        y.sum().backward();
        x.grad.Should().NotBeNull();
        using var w = layer.QuantizedWeight();
        // d(sum(x W^T))/dx = ones @ W  → every row equals the column sums of dequant(W)
        var expected = w.Dequantize(ScalarType.Float32).sum(dim: 0L).expand(6, 64);
        (x.grad! - expected).abs().max().item<float>().Should().BeLessThanOrEqualTo(1e-5f);
        foreach (var (_, buffer) in layer.named_buffers())
        {
            buffer.requires_grad.Should().BeFalse();
            buffer.grad.Should().BeNull();
        }
    }

    [Fact]
    public void BitsAndBytesStateRoundTripsThroughFromNf4()
    {
        using var scope = NewDisposeScope();
        var weight = randn(16, 64, generator: new Generator(2));
        using var layer = Linear4bit.FromLinear(weight);
        var state = layer.ToBitsAndBytesState("model.layers.0.self_attn.q_proj");
        using var nf4 = Nf4Tensor.FromBitsAndBytesState(state, "model.layers.0.self_attn.q_proj");
        using var again = Linear4bit.FromNf4(nf4);
        var x = randn(2, 64, generator: new Generator(9));
        (layer.forward(x) - again.forward(x)).abs().max().item<float>().Should().Be(0f);
    }

    [Fact]
    public void TheCodebookIsBuiltOncePerDeviceNotPerCall()
    {
        using var scope = NewDisposeScope();
        using var layer = Linear4bit.FromLinear(randn(16, 64), null, new Nf4Options { ComputeDtype = ScalarType.Float32 });
        var field = typeof(Linear4bit).GetField("_codebook", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic)!;
        layer.forward(randn(2, 64));
        var first = (Tensor)field.GetValue(layer)!;
        layer.forward(randn(2, 64));
        field.GetValue(layer).Should().BeSameAs(first);
    }
}
