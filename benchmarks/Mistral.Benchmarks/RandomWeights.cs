using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>Mistral models with random weights (no real weights exist on the GPU machine; speed and memory do not depend on them).</summary>
internal static class RandomWeights
{
    /// <summary>Builds a model on <paramref name="device"/>: norms 1, every other weight N(0, 0.02), seeded.</summary>
    public static MistralForCausalLM Model(MistralConfig config, ScalarType dtype, Device device)
    {
        var model = new MistralForCausalLM(config, dtype, device);
        using (no_grad())
        {
            manual_seed(1234); // a benchmark program may set the process-wide seed; the library never does
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.Contains("norm"))
                {
                    p.fill_(1.0);
                }
                else
                {
                    p.normal_(0, 0.02);
                }
            }
        }

        return model;
    }
}
