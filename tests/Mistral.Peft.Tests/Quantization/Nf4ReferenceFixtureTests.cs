using System.Text.Json;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Quantization;

/// <summary>Every case of tools/nf4/nf4_reference.py must be reproduced bit for bit.</summary>
public class Nf4ReferenceFixtureTests
{
    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        using var index = Nf4Fixtures.Index();
        foreach (var c in index.RootElement.GetProperty("cases").EnumerateArray())
        {
            data.Add(c.GetProperty("name").GetString()!);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void QuantizeAndDequantizeMatchReferenceBitForBit(string name)
    {
        Nf4Case c = Nf4Fixtures.Case(name);
        string F(string key) => c.File(key);
        long[] shape = c.Shape;
        int bs = c.BlockSize;
        using var scope = NewDisposeScope();
        var input = tensor(Nf4Fixtures.Floats(F("input"))).reshape(shape);

        using (var plain = Nf4Tensor.Quantize(input, new Nf4Options { BlockSize = bs, DoubleQuant = false }))
        {
            BitAssert.ToBytes(plain.Packed).Should().Equal(Nf4Fixtures.Bytes(F("packed")), "packed codes");
            plain.Packed.shape.Should().Equal([(plain.ElementCount + 1) / 2, 1L]);
            BitAssert.Float32Equal(BitAssert.ToFloats(plain.Absmax), Nf4Fixtures.Floats(F("absmax")), "absmax");
            BitAssert.Float32Equal(BitAssert.ToFloats(plain.Dequantize(ScalarType.Float32)), Nf4Fixtures.Floats(F("deq_f32")), "dequantized float32");
            var bf = plain.Dequantize(ScalarType.BFloat16);
            bf.dtype.Should().Be(ScalarType.BFloat16);
            bf.shape.Should().Equal(shape);
            BitAssert.Float32Equal(BitAssert.ToFloats(bf), Nf4Fixtures.BFloat16AsFloats(F("deq_bf16")), "dequantized bfloat16");
        }

        using var dq = Nf4Tensor.Quantize(input, new Nf4Options { BlockSize = bs });
        BitAssert.ToBytes(dq.Packed).Should().Equal(Nf4Fixtures.Bytes(F("packed")));
        BitAssert.ToBytes(dq.Absmax).Should().Equal(Nf4Fixtures.Bytes(F("absmax_u8")), "double-quantized absmax codes");
        BitAssert.Float32Equal(BitAssert.ToFloats(dq.NestedAbsmax!), Nf4Fixtures.Floats(F("nested_absmax")), "nested_absmax");
        BitConverter.SingleToUInt32Bits(dq.NestedOffset).Should().Be(c.OffsetBits, "offset");
        BitAssert.Float32Equal(BitAssert.ToFloats(dq.Dequantize(ScalarType.Float32)), Nf4Fixtures.Floats(F("deq_dq_f32")), "double-quant dequantized float32");
        BitAssert.Float32Equal(BitAssert.ToFloats(dq.Dequantize(ScalarType.BFloat16)), Nf4Fixtures.BFloat16AsFloats(F("deq_dq_bf16")), "double-quant dequantized bfloat16");
        dq.QuantStateJson().Should().Be(c.QuantStateJson, "the quant_state JSON bytes as bitsandbytes' json.dumps writes them");
    }

    [Fact]
    public void BlockwiseEightBitRuleMatchesDQuantizeIncludingExactMidpoints()
    {
        using var index = Nf4Fixtures.Index();
        var b8 = index.RootElement.GetProperty("blockwise8");
        using var scope = NewDisposeScope();
        var input = tensor(Nf4Fixtures.Floats(b8.GetProperty("input").GetString()!));
        var map = tensor(DynamicQuantizationMap.Create());
        var (codes, absmax) = Nf4Kernels.QuantizeBlockwise8(input, map, 256);
        var expected = Nf4Fixtures.Bytes(b8.GetProperty("codes").GetString()!);
        BitAssert.ToBytes(codes).Should().Equal(expected);
        BitAssert.ToFloats(absmax).Should().OnlyContain(v => v == 1.0f);
        // the fixture exercises ties: midpoints between codes k, k+1 go to the even one
        expected.Take(255).Select((code, k) => (int)code).Should().Equal(Enumerable.Range(0, 255).Select(k => k % 2 == 0 ? k : k + 1));
    }

    [Fact]
    public void DynamicMapEqualsPublishedBitsAndBytesTableAndFixture()
    {
        var derived = DynamicQuantizationMap.Create();
        BitAssert.Float32Equal(derived, Nf4Fixtures.PublishedDynamicMap(), "dynamic map vs published nested_quant_map");
        using var index = Nf4Fixtures.Index();
        var bits = index.RootElement.GetProperty("dynamic_map_f32_bits").EnumerateArray().Select(e => e.GetUInt32()).ToArray();
        derived.Select(BitConverter.SingleToUInt32Bits).Should().Equal(bits);
        derived[0].Should().Be(-0.992968738079071f);
        derived[127].Should().Be(0f);
        derived[255].Should().Be(1f);
    }

    [Fact]
    public void Nf4TableAndThresholdsAreTheBitsAndBytesValues()
    {
        using var index = Nf4Fixtures.Index();
        var table = index.RootElement.GetProperty("nf4_code").EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
        Nf4Codebook.Values.Should().Equal(table);
        var thresholdBits = index.RootElement.GetProperty("nf4_thresholds_f32_bits").EnumerateArray().Select(e => e.GetUInt32());
        Nf4Codebook.Thresholds.Select(BitConverter.SingleToUInt32Bits).Should().Equal(thresholdBits);
        var differ = new List<int>();
        for (int i = 0; i < 15; i++)
        {
            float mid = (Nf4Codebook.Values[i] + Nf4Codebook.Values[i + 1]) / 2f;
            if (mid != Nf4Codebook.Thresholds[i])
            {
                differ.Add(i);
                Math.Abs((int)BitConverter.SingleToUInt32Bits(Math.Abs(mid)) - (int)BitConverter.SingleToUInt32Bits(Math.Abs(Nf4Codebook.Thresholds[i]))).Should().Be(1);
            }
        }

        differ.Should().Equal(0, 8, 12, 14);
    }
}
