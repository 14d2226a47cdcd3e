using System.Text;
using System.Text.Json;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Quantization;

public class Nf4TensorTests
{
    private const string P = "model.layers.3.mlp.down_proj";

    [Fact]
    public void BitsAndBytesKeySetRoundTripsExactly()
    {
        using var scope = NewDisposeScope();
        var w = randn(24, 128, generator: new Generator(4)).to(ScalarType.BFloat16);
        using var q = Nf4Tensor.Quantize(w);
        var state = q.ToBitsAndBytesState(P);
        state.Keys.Should().BeEquivalentTo(
            $"{P}.weight", $"{P}.weight.absmax", $"{P}.weight.quant_map", $"{P}.weight.nested_absmax",
            $"{P}.weight.nested_quant_map", $"{P}.weight.quant_state.bitsandbytes__nf4");
        state[$"{P}.weight"].dtype.Should().Be(ScalarType.Byte);
        state[$"{P}.weight"].shape.Should().Equal([24L * 128 / 2, 1L]);
        state[$"{P}.weight.absmax"].dtype.Should().Be(ScalarType.Byte);
        state[$"{P}.weight.nested_quant_map"].shape.Should().Equal([256L]);
        var json = Encoding.UTF8.GetString(state[$"{P}.weight.quant_state.bitsandbytes__nf4"].data<byte>().ToArray());
        json.Should().StartWith("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [24, 128], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": ");
        using var back = Nf4Tensor.FromBitsAndBytesState(state, P);
        back.DType.Should().Be(ScalarType.BFloat16);
        back.Shape.Should().Equal(24L, 128L);
        BitConverter.SingleToInt32Bits(back.NestedOffset).Should().Be(BitConverter.SingleToInt32Bits(q.NestedOffset));
        BitAssert.Float32Equal(BitAssert.ToFloats(back.Dequantize()), BitAssert.ToFloats(q.Dequantize()), "round trip");
    }

    [Fact]
    public void PlainAbsmaxStateHasNoNestedKeys()
    {
        using var scope = NewDisposeScope();
        using var q = Nf4Tensor.Quantize(randn(8, 64), new Nf4Options { DoubleQuant = false });
        var state = q.ToBitsAndBytesState("");
        state.Keys.Should().BeEquivalentTo("weight", "weight.absmax", "weight.quant_map", "weight.quant_state.bitsandbytes__nf4");
        state["weight.absmax"].dtype.Should().Be(ScalarType.Float32);
        q.QuantStateJson().Should().Be("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [8, 64]}");
        using var back = Nf4Tensor.FromBitsAndBytesState(state, "");
        back.IsDoubleQuantized.Should().BeFalse();
    }

    [Theory]
    [InlineData("weight.absmax")]
    [InlineData("weight.nested_quant_map")]
    [InlineData("weight.quant_state.bitsandbytes__nf4")]
    [InlineData("weight")]
    public void MissingKeyIsNamed(string suffix)
    {
        using var scope = NewDisposeScope();
        using var q = Nf4Tensor.Quantize(randn(8, 64));
        var state = q.ToBitsAndBytesState(P).Where(kv => kv.Key != $"{P}.{suffix}").ToDictionary();
        var act = () => Nf4Tensor.FromBitsAndBytesState(state, P);
        act.Should().Throw<KeyNotFoundException>().WithMessage($"*'{P}.{suffix}'*");
    }

    [Fact]
    public void WrongPackedSizeIsReportedWithKey()
    {
        using var scope = NewDisposeScope();
        using var q = Nf4Tensor.Quantize(randn(8, 64));
        var state = q.ToBitsAndBytesState(P).ToDictionary();
        state[$"{P}.weight"] = zeros(10, 1, ScalarType.Byte);
        var act = () => Nf4Tensor.FromBitsAndBytesState(state, P);
        act.Should().Throw<InvalidDataException>().WithMessage($"*'{P}.weight'*256*");
    }

    [Theory]
    [InlineData(16)]
    [InlineData(48)]
    [InlineData(8192)]
    public void InvalidBlockSizeIsNamed(int blockSize)
    {
        var act = () => new Nf4Options { BlockSize = blockSize }.Validate();
        act.Should().Throw<ArgumentException>().WithMessage("*Nf4Options.BlockSize*");
    }

    [Fact]
    public void OtherInvalidOptionsAreNamed()
    {
        FluentActions.Invoking(() => new Nf4Options { NestedBlockSize = 100 }.Validate()).Should().Throw<ArgumentException>().WithMessage("*Nf4Options.NestedBlockSize*");
        FluentActions.Invoking(() => new Nf4Options { ComputeDtype = ScalarType.Int32 }.Validate()).Should().Throw<ArgumentException>().WithMessage("*Nf4Options.ComputeDtype*");
        FluentActions.Invoking(() => new Nf4Options { QuantStorage = ScalarType.BFloat16 }.Validate()).Should().Throw<ArgumentException>().WithMessage("*Nf4Options.QuantStorage*");
        new Nf4Options { BlockSize = 32 }.Validate().BlockSize.Should().Be(32);
        new Nf4Options { BlockSize = 4096 }.Validate().BlockSize.Should().Be(4096);
    }

    [Theory]
    [InlineData(0.1f, "0.10000000149011612")]
    [InlineData(1e-5f, "9.999999747378752e-06")]
    [InlineData(0.0001f, "9.999999747378752e-05")]
    [InlineData(0.001f, "0.0010000000474974513")]
    [InlineData(1.0f, "1.0")]
    [InlineData(0.0f, "0.0")]
    [InlineData(-2.5f, "-2.5")]
    [InlineData(1e16f, "1.0000000272564224e+16")]
    [InlineData(-3e-20f, "-2.9999999047965676e-20")]
    [InlineData(123456.0f, "123456.0")]
    public void OffsetIsFormattedLikePythonRepr(float value, string expected) =>
        PythonFloatFormat.Format(value).Should().Be(expected);

    [Fact]
    public void QuantizationConfigWritesAndReadsTransformersKeys()
    {
        var config = new QuantizationConfig();
        var json = config.ToJson().ToJsonString();
        json.Should().Be("{\"_load_in_4bit\":true,\"_load_in_8bit\":false,\"bnb_4bit_compute_dtype\":\"bfloat16\",\"bnb_4bit_quant_storage\":\"uint8\",\"bnb_4bit_quant_type\":\"nf4\",\"bnb_4bit_use_double_quant\":true,\"llm_int8_enable_fp32_cpu_offload\":false,\"llm_int8_has_fp16_weight\":false,\"llm_int8_skip_modules\":null,\"llm_int8_threshold\":6,\"load_in_4bit\":true,\"load_in_8bit\":false,\"quant_method\":\"bitsandbytes\"}");
        using var doc = JsonDocument.Parse(json);
        QuantizationConfig.FromJson(doc.RootElement).Should().BeEquivalentTo(config);
        using var fp4 = JsonDocument.Parse("{\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true,\"bnb_4bit_quant_type\":\"fp4\"}");
        FluentActions.Invoking(() => QuantizationConfig.FromJson(fp4.RootElement)).Should().Throw<InvalidDataException>().WithMessage("*bnb_4bit_quant_type*");
    }

    [Fact]
    public void Mistral7BWeightsTakeAbout4Point1GBWithNf4DoubleQuant()
    {
        const long hidden = 4096, intermediate = 14336, layers = 32, heads = 32, kvHeads = 8, vocab = 32000;
        long headDim = hidden / heads;
        long[] perLayer =
        [
            hidden * hidden, kvHeads * headDim * hidden, kvHeads * headDim * hidden, hidden * hidden,
            intermediate * hidden, intermediate * hidden, hidden * intermediate,
        ];
        long quantized = layers * perLayer.Sum(n => Nf4Tensor.StorageBytesFor(n));
        long bf16 = (2 * vocab * hidden * 2) + (((2 * layers) + 1) * hidden * 2);
        long total = quantized + bf16;
        long parameters = (layers * perLayer.Sum()) + (2 * vocab * hidden) + (((2 * layers) + 1) * hidden);
        parameters.Should().Be(7_241_732_096);
        long packed = layers * perLayer.Sum() / 2;
        packed.Should().Be(3_489_660_928);                 // 3.49 GB of packed codes
        (quantized - packed).Should().Be(109_051_904 + 1_703_936 + 229_376); // u8 scales, nested scales, maps
        total.Should().Be(4_125_466_624);                  // ≈ 4.1 GB (3.84 GiB)
        (parameters * 2).Should().Be(14_483_464_192);      // vs 14.5 GB in bf16
        using var q = Nf4Tensor.Quantize(zeros(64, 4096));
        q.StorageBytes.Should().Be(Nf4Tensor.StorageBytesFor(64 * 4096));
    }
}
