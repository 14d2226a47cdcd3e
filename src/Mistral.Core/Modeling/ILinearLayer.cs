namespace Mistral.Core.Modeling;

/// <summary>
/// What every linear layer of the model exposes, whatever stores its weight (16/32-bit, 4-bit, LoRA-wrapped).
/// </summary>
/// <remarks>
/// The model's projections are fields of type <c>Module&lt;Tensor, Tensor&gt;</c>, so Mistral.Peft can swap one for a
/// 4-bit or LoRA layer by name with <see cref="ModuleTree.Replace"/> without the model code knowing.
/// </remarks>
public interface ILinearLayer
{
    /// <summary>Input width.</summary>
    long InFeatures { get; }

    /// <summary>Output width.</summary>
    long OutFeatures { get; }
}
