using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// A projection layer that can compute itself together with sibling layers of its own kind in one fused kernel during
/// decoding (a few rows, no autograd): q, k and v side by side, the MLP's <c>silu(gate) · up</c>, or one projection plus
/// the residual (o_proj, down_proj). Implemented by the
/// plain bf16 <see cref="Linear"/> and by the 4-bit layer of Mistral.Peft.
/// </summary>
internal interface IFusedDecodeProjection
{
    /// <summary>
    /// <paramref name="x"/> [rows, in] through this layer and <paramref name="others"/>: plain, one [rows, Σ out] tensor
    /// (this layer's features first); with <paramref name="siluUp"/> (one other of equal width),
    /// <c>silu(this(x)) · other(x)</c> [rows, out]; with <paramref name="residual"/> (bf16 [rows, out], contiguous)
    /// <c>residual + that</c>, the decoder layer's residual add in the same pass. Null when the layers or the input do not
    /// allow the fused kernel.
    /// </summary>
    Tensor? TryProjectWith(Tensor x, IReadOnlyList<object> others, bool siluUp, Tensor? residual = null);
}
