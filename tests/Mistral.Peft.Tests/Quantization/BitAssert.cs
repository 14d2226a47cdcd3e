using TorchSharp;

namespace Mistral.Peft.Tests.Quantization;

internal static class BitAssert
{
    /// <summary>Asserts float32 bit equality (so -0.0 differs from 0.0) and reports the first difference.</summary>
    public static void Float32Equal(float[] actual, float[] expected, string what)
    {
        actual.Length.Should().Be(expected.Length, what);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i]))
            {
                throw new Xunit.Sdk.XunitException($"{what}: element {i} is {actual[i]:R} (0x{BitConverter.SingleToInt32Bits(actual[i]):X8}), expected {expected[i]:R} (0x{BitConverter.SingleToInt32Bits(expected[i]):X8}).");
            }
        }
    }

    public static float[] ToFloats(torch.Tensor t) => t.detach().cpu().to(torch.ScalarType.Float32).contiguous().data<float>().ToArray();

    public static byte[] ToBytes(torch.Tensor t) => t.detach().cpu().contiguous().data<byte>().ToArray();
}
