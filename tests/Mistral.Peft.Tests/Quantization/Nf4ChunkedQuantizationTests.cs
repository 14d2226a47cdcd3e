using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Quantization;

/// <summary>Quantizing in chunks of whole blocks gives the same bits as the reference and as one pass.</summary>
public class Nf4ChunkedQuantizationTests
{
    [Theory]
    [MemberData(nameof(Nf4ReferenceFixtureTests.CaseNames), MemberType = typeof(Nf4ReferenceFixtureTests))]
    public void ChunksOfTwoBlocksReproduceTheReferenceBitForBit(string name)
    {
        Nf4Case c = Nf4Fixtures.Case(name);
        string F(string key) => c.File(key);
        long[] shape = c.Shape;
        int bs = c.BlockSize;
        using var scope = NewDisposeScope();
        var input = tensor(Nf4Fixtures.Floats(F("input"))).reshape(shape);
        long chunk = 2L * bs;

        var (packed, absmax) = Nf4Kernels.QuantizeNf4(input, bs, chunk);

        BitAssert.ToBytes(packed).Should().Equal(Nf4Fixtures.Bytes(F("packed")), "packed codes");
        packed.shape.Should().Equal([(input.numel() + 1) / 2, 1L]);
        BitAssert.Float32Equal(BitAssert.ToFloats(absmax), Nf4Fixtures.Floats(F("absmax")), "absmax");

        using var dq = Nf4Tensor.Quantize(input, new Nf4Options { BlockSize = bs }, chunk);
        BitAssert.ToBytes(dq.Packed).Should().Equal(Nf4Fixtures.Bytes(F("packed")));
        BitAssert.ToBytes(dq.Absmax).Should().Equal(Nf4Fixtures.Bytes(F("absmax_u8")), "double-quantized absmax codes");
        BitAssert.Float32Equal(BitAssert.ToFloats(dq.NestedAbsmax!), Nf4Fixtures.Floats(F("nested_absmax")), "nested_absmax");
        BitConverter.SingleToUInt32Bits(dq.NestedOffset).Should().Be(c.OffsetBits, "offset");
    }

    [Theory]
    [InlineData(64, 64L)]        // one block per chunk
    [InlineData(64, 100L)]       // rounded down to one block
    [InlineData(64, 1L)]         // less than a block: still one block
    [InlineData(32, 96L)]        // three blocks per chunk
    [InlineData(128, 1L << 20)]  // one chunk holds everything
    public void AnyChunkSizeEqualsOnePassIncludingOddLengthsZeroBlocksAndABFloat16Source(int blockSize, long chunk)
    {
        using var scope = NewDisposeScope();
        // 4097 elements: an odd count (padding nibble) and a partial last block; block 3 is all zeros (absmax 0 → NaN → code 0).
        var values = randn(4097, generator: new Generator(17)) * 3f;
        values.slice(0, 3 * blockSize, 4 * blockSize, 1).zero_();
        foreach (var source in new[] { values, values.to(ScalarType.BFloat16), values.to(ScalarType.Float16) })
        {
            var (onePassPacked, onePassAbsmax) = Nf4Kernels.QuantizeNf4(source, blockSize, long.MaxValue);
            var (packed, absmax) = Nf4Kernels.QuantizeNf4(source, blockSize, chunk);
            packed.shape.Should().Equal([2049L, 1L]);
            absmax.shape.Should().Equal([(4097L + blockSize - 1) / blockSize]);
            BitAssert.ToBytes(packed).Should().Equal(BitAssert.ToBytes(onePassPacked));
            BitAssert.Float32Equal(BitAssert.ToFloats(absmax), BitAssert.ToFloats(onePassAbsmax), "absmax");
            BitAssert.ToFloats(absmax)[3].Should().Be(0f);
        }
    }

    [Fact]
    public void AWeightLargerThanTheDefaultChunkIsQuantizedInSeveralChunksWithTheSameResult()
    {
        using var scope = NewDisposeScope();
        // 5 Mi elements > the 4 Mi default chunk, in bf16 as real checkpoints are.
        var weight = (randn(1280, 4096, generator: new Generator(8)) * 0.02f).to(ScalarType.BFloat16);
        weight.numel().Should().BeGreaterThan(Nf4Kernels.DefaultChunkElements);
        using var chunked = Nf4Tensor.Quantize(weight, new Nf4Options());
        using var onePass = Nf4Tensor.Quantize(weight, new Nf4Options(), long.MaxValue);
        TensorChecks.Exactly(chunked.Packed, onePass.Packed).Should().BeTrue();
        TensorChecks.Exactly(chunked.Absmax, onePass.Absmax).Should().BeTrue();
        TensorChecks.Exactly(chunked.NestedAbsmax!, onePass.NestedAbsmax!).Should().BeTrue();
        BitConverter.SingleToUInt32Bits(chunked.NestedOffset).Should().Be(BitConverter.SingleToUInt32Bits(onePass.NestedOffset));
    }
}
