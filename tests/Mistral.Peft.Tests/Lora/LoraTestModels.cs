using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

/// <summary>LoRA-test helpers on top of the shared tiny models (Mistral.Tests.Shared.TinyModels).</summary>
internal static class LoraTestModels
{
    /// <summary>Replaces every decoder projection by a float32-compute NF4 layer.</summary>
    public static void QuantizeProjections(MistralForCausalLM model, ScalarType computeDtype = ScalarType.Float32)
    {
        var names = ModuleTree.NamedModules(model)
            .Where(m => m.Module is Mistral.Core.Modeling.Linear && m.Name != "lm_head")
            .Select(m => m.Name)
            .ToList();
        foreach (string name in names)
        {
            var dense = (nn.Module<Tensor, Tensor>)ModuleTree.Get(model, name);
            ModuleTree.Replace(model, name, Linear4bit.FromLinear(dense, new Nf4Options { ComputeDtype = computeDtype }));
        }
    }
}
