using static TorchSharp.torch;

namespace Mistral.Core.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DTypeName">The safetensors dtype name (e.g. <c>BF16</c>).</param>
/// <param name="DType">The matching scalar type.</param>
/// <param name="Shape">The shape.</param>
/// <param name="Begin">Start of the data, relative to the end of the header.</param>
/// <param name="End">End (exclusive) of the data, relative to the end of the header.</param>
public sealed record SafeTensorInfo(string Name, string DTypeName, ScalarType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Size of the data in bytes.</summary>
    public long ByteLength => End - Begin;

    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}
