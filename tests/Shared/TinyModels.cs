using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Tests.Shared;

/// <summary>Tiny random Mistral models, random token ids and their logits.</summary>
internal static class TinyModels
{
    /// <summary>Hidden 32, intermediate 48, 2 layers, 4 heads / 1 kv head of 8, vocab 97 (20,704 parameters), sliding window 6.</summary>
    public static MistralConfig Tiny(int? window = 6, int hidden = 32) => new()
    {
        VocabSize = 97,
        HiddenSize = hidden,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 1,
        HeadDim = 8,
        SlidingWindow = window,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        MaxPositionEmbeddings = 512,
    };

    /// <summary>
    /// A model in eval mode whose parameters are drawn in <c>named_parameters</c> order from one generator seeded with
    /// <paramref name="seed"/>: norms 1 + 0.1·N(0,1), everything else 0.1·N(0,1).
    /// </summary>
    public static MistralForCausalLM RandomModel(MistralConfig? config = null, long seed = 1, ScalarType dtype = ScalarType.Float32)
    {
        var model = new MistralForCausalLM(config ?? Tiny(), dtype, CPU);
        using var gen = new Generator((ulong)seed);
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.Contains("norm"))
                {
                    p.copy_(1.0f + (0.1f * randn(p.shape, ScalarType.Float32, generator: gen)));
                }
                else
                {
                    p.copy_(0.1f * randn(p.shape, ScalarType.Float32, generator: gen));
                }
            }
        }

        model.eval();
        return model;
    }

    /// <summary>int64 [batch, seq] ids drawn uniformly from [3, vocab).</summary>
    public static Tensor Ids(long seed = 3, long batch = 2, long seq = 10, long vocab = 97)
    {
        using var gen = new Generator((ulong)seed);
        return randint(3, vocab, [batch, seq], ScalarType.Int64, generator: gen);
    }

    /// <summary>The logits of a plain forward without gradients (a copy the caller owns).</summary>
    public static Tensor Logits(MistralForCausalLM model, Tensor ids, Tensor? mask = null)
    {
        using var guard = no_grad();
        using var output = model.forward(new CausalLMInput(ids) { AttentionMask = mask });
        return output.Logits.detach().clone();
    }
}
