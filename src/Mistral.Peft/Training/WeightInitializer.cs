using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// Fills a freshly built <see cref="MistralForCausalLM"/> (whose parameters are created uninitialised) with starting
/// weights for pre-training from scratch with <see cref="CausalLMTrainer"/>.
/// </summary>
public static class WeightInitializer
{
    /// <summary>
    /// Initialises every parameter the way transformers' <c>MistralPreTrainedModel._init_weights</c> does: the token
    /// embedding and every linear weight (projections and <c>lm_head</c>) from N(0, <paramref name="initializerRange"/>²),
    /// biases 0, RMSNorm weights 1, and the embedding row of <see cref="Core.Configuration.MistralConfig.PadTokenId"/> (when
    /// set) 0. The values come from a private generator seeded with <paramref name="seed"/>, drawn in float32 on the CPU
    /// in <c>named_parameters</c> order and then converted to each parameter's dtype and device, so they depend only on the
    /// seed and the architecture (not on the device); they are not PyTorch's draws for the same seed. TorchSharp's default
    /// generator is not used.
    /// </summary>
    /// <param name="model">A dense model (no LoRA or 4-bit layers).</param>
    /// <param name="seed">The generator's seed.</param>
    /// <param name="initializerRange">The standard deviation (<c>initializer_range</c>, 0.02 in Mistral's config); positive and finite.</param>
    /// <exception cref="ArgumentException">The model holds LoRA or 4-bit layers, or the range is not positive and finite.</exception>
    public static void Initialize(MistralForCausalLM model, long seed, double initializerRange = 0.02)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!(initializerRange > 0 && double.IsFinite(initializerRange)))
        {
            throw new ArgumentException($"initializerRange must be a positive finite number; got {initializerRange}.", nameof(initializerRange));
        }

        var modules = ModuleTree.NamedModules(model).ToList();
        var foreign = modules.FirstOrDefault(m => m.Module is LoraLinear or Linear4bit);
        if (foreign.Module is not null)
        {
            throw new ArgumentException($"Initialize fills a dense Mistral; '{foreign.Name}' is a {foreign.Module.GetType().Name}.", nameof(model));
        }

        var norms = modules.Where(m => m.Module is RmsNorm).Select(m => m.Name + ".").ToList();
        using var generator = new Generator(unchecked((ulong)seed));
        using var guard = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            using var scope = NewDisposeScope();
            Tensor value;
            if (norms.Any(n => name.StartsWith(n, StringComparison.Ordinal)))
            {
                value = ones(p.shape, ScalarType.Float32);
            }
            else if (name.EndsWith(".bias", StringComparison.Ordinal))
            {
                value = zeros(p.shape, ScalarType.Float32);
            }
            else
            {
                value = randn(p.shape, ScalarType.Float32, generator: generator).mul_(initializerRange);
                if (name == "model.embed_tokens.weight" && model.Config.PadTokenId is int pad && pad >= 0 && pad < p.shape[0])
                {
                    value[pad].zero_();
                }
            }

            p.copy_(value);
        }
    }
}
