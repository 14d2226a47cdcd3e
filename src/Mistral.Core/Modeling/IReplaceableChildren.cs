using TorchSharp;

namespace Mistral.Core.Modeling;

/// <summary>A module whose named children can be swapped (for 4-bit or LoRA layers) without its code knowing.</summary>
public interface IReplaceableChildren
{
    /// <summary>Replaces the direct child <paramref name="name"/> (its state-dict name) with <paramref name="replacement"/>.</summary>
    void ReplaceChild(string name, torch.nn.Module replacement);
}
