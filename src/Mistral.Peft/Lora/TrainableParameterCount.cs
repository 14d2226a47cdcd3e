using System.Globalization;

namespace Mistral.Peft.Lora;

/// <summary>
/// Parameter counts as PEFT's <c>get_nb_trainable_parameters</c> reports them. A <see cref="Quantization.Linear4bit"/>
/// weight counts its packed bytes × 2 (one per 4-bit value, i.e. the original element count), as PEFT counts
/// bitsandbytes' <c>Params4bit</c>; the 4-bit scales (absmax and the double-quantization tensors) are not counted,
/// as they are not parameters in PEFT either.
/// </summary>
/// <param name="Trainable">Elements of parameters that require gradients.</param>
/// <param name="All">Elements of all parameters (4-bit weights counted as described).</param>
public sealed record TrainableParameterCount(long Trainable, long All)
{
    /// <summary>100 · Trainable / All (0 for an empty model).</summary>
    public double Percent => All == 0 ? 0 : 100.0 * Trainable / All;

    /// <summary>PEFT's <c>print_trainable_parameters</c> line: <c>trainable params: 1,234 || all params: 5,678 || trainable%: 21.7330</c>.</summary>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"trainable params: {Trainable:N0} || all params: {All:N0} || trainable%: {Percent:F4}");
}
