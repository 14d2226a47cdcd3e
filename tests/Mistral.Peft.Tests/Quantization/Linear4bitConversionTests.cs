using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Quantization;

/// <summary>
/// Module conversions keep the NF4 state bit for bit: a dtype change converts only the bias (bitsandbytes'
/// Params4bit), a device move moves everything.
/// </summary>
public class Linear4bitConversionTests
{
    private static readonly ScalarType[] DoubleQuantDtypes = [ScalarType.Byte, ScalarType.Byte, ScalarType.Float32, ScalarType.Float32, ScalarType.Float32];
    private static readonly ScalarType[] PlainDtypes = [ScalarType.Byte, ScalarType.Float32];

    private static Linear4bit NewLayer(bool doubleQuant)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(21);
        var weight = randn(48, 128, generator: gen) * 0.1f;
        var bias = randn(48, generator: gen);
        return Linear4bit.FromLinear(weight, bias, new Nf4Options { ComputeDtype = ScalarType.Float32, DoubleQuant = doubleQuant });
    }

    private static List<(string Name, Tensor Copy)> Snapshot(nn.Module module) =>
        module.named_buffers().Select(b => (b.name, b.buffer.clone())).ToList();

    private static void ShouldBeUnchanged(nn.Module module, List<(string Name, Tensor Copy)> before, ScalarType[] dtypes)
    {
        var now = module.named_buffers().ToList();
        now.Select(b => b.name).Should().Equal(before.Select(b => b.Name));
        now.Select(b => b.buffer.dtype).Should().Equal(dtypes);
        for (int i = 0; i < now.Count; i++)
        {
            TensorChecks.Exactly(now[i].buffer, before[i].Copy).Should().BeTrue($"buffer '{now[i].name}' must keep its bits");
        }
    }

    [Theory]
    [InlineData(ScalarType.BFloat16, true)]
    [InlineData(ScalarType.Float16, true)]
    [InlineData(ScalarType.BFloat16, false)]
    [InlineData(ScalarType.Float64, true)]
    public void DtypeChangeConvertsOnlyTheBias(ScalarType dtype, bool doubleQuant)
    {
        using var scope = NewDisposeScope();
        using var layer = NewLayer(doubleQuant);
        var before = Snapshot(layer);
        Tensor deqBefore;
        using (var w = layer.QuantizedWeight())
        {
            deqBefore = w.Dequantize(ScalarType.Float32);
        }

        var biasBefore = layer.named_parameters().Single(p => p.name == "bias").parameter.detach().clone();

        layer.to(dtype).Should().BeSameAs(layer);

        ShouldBeUnchanged(layer, before, doubleQuant ? DoubleQuantDtypes : PlainDtypes);
        layer.ComputeDtype.Should().Be(ScalarType.Float32);
        var bias = layer.named_parameters().Single(p => p.name == "bias").parameter;
        bias.dtype.Should().Be(dtype);
        bias.requires_grad.Should().BeFalse();
        TensorChecks.Exactly(bias, biasBefore.to(dtype)).Should().BeTrue();
        using (var w = layer.QuantizedWeight())
        {
            TensorChecks.Exactly(w.Dequantize(ScalarType.Float32), deqBefore).Should().BeTrue("the dequantized weight must not move");
        }

        // Still a working layer: x @ dequant(W)^T + bias in the unchanged compute dtype, returned in the input dtype.
        var x = randn(3, 128, generator: new Generator(4)).to(dtype);
        var y = layer.forward(x);
        y.dtype.Should().Be(dtype);
        var expected = (x.to(ScalarType.Float32).matmul(deqBefore.t()) + bias.to(ScalarType.Float32)).to(dtype);
        TensorChecks.Exactly(y, expected).Should().BeTrue();
    }

    [Fact]
    public void HalfAndBFloat16ExtensionsAndAParentsCastLeaveTheQuantizedBuffers()
    {
        using var scope = NewDisposeScope();
        using var parent = nn.Sequential(("q", NewLayer(doubleQuant: true)), ("dense", nn.Linear(48, 8)));
        var before = Snapshot(parent.named_children().Single(c => c.name == "q").module);
        parent.half();
        parent.bfloat16();
        var layer = (Linear4bit)parent.named_children().Single(c => c.name == "q").module;
        ShouldBeUnchanged(layer, before, DoubleQuantDtypes);
        layer.named_parameters().Single(p => p.name == "bias").parameter.dtype.Should().Be(ScalarType.BFloat16);
        parent.named_parameters().Where(p => p.name.StartsWith("dense.", StringComparison.Ordinal)).Should().OnlyContain(p => p.parameter.dtype == ScalarType.BFloat16);
    }

    [Fact]
    public void DeviceMovesStillWorkAndTheDeviceDtypeOverloadConvertsOnlyTheBias()
    {
        using var scope = NewDisposeScope();
        using var layer = NewLayer(doubleQuant: true);
        var before = Snapshot(layer);
        layer.to(CPU).Should().BeSameAs(layer);
        layer.to(DeviceType.CPU).Should().BeSameAs(layer);
        ShouldBeUnchanged(layer, before, DoubleQuantDtypes);
        layer.to(CPU, ScalarType.BFloat16).Should().BeSameAs(layer);
        ShouldBeUnchanged(layer, before, DoubleQuantDtypes);
        layer.named_buffers().Should().OnlyContain(b => b.buffer.device.type == DeviceType.CPU);
        layer.named_parameters().Single(p => p.name == "bias").parameter.dtype.Should().Be(ScalarType.BFloat16);
    }

    [Fact]
    public void AnIntegerDtypeIsRejectedNamingIt()
    {
        using var layer = NewLayer(doubleQuant: true);
        FluentActions.Invoking(() => layer.to(ScalarType.Int32)).Should().Throw<ArgumentException>().WithMessage("*Int32*");
    }
}
