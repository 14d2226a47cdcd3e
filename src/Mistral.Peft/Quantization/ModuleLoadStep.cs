using TorchSharp;

namespace Mistral.Peft.Quantization;

/// <summary>One module of the meta model and the checkpoint tensors that materialise it.</summary>
/// <param name="Name">Dotted module name, e.g. <c>model.layers.0.self_attn.q_proj</c>.</param>
/// <param name="Module">The module on the meta device.</param>
/// <param name="Kind">How it is materialised.</param>
/// <param name="Tensors">Local tensor name (e.g. <c>weight</c>) → checkpoint key it is read from.</param>
internal sealed record ModuleLoadStep(string Name, torch.nn.Module Module, ModuleLoadKind Kind, IReadOnlyList<KeyValuePair<string, string>> Tensors);
