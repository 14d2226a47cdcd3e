namespace Mistral.Core.Modeling;

/// <summary>
/// A module with fused CUDA kernels of its own (such as a 4-bit linear layer) that
/// <see cref="MistralForCausalLM.UseFusedKernels"/> switches together with the model's.
/// </summary>
public interface IFusedKernelSwitch
{
    /// <summary>Whether the module's fused kernels may be used.</summary>
    bool UseFusedKernels { get; set; }
}
