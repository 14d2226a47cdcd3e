using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

internal static class TestModels
{
    public static string FixturePath(params string[] parts)
    {
        string dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, "tests", "fixtures")))
        {
            dir = Path.GetDirectoryName(dir)!;
        }

        return Path.Combine([dir ?? throw new DirectoryNotFoundException("tests/fixtures not found above the test binaries."), "tests", "fixtures", .. parts]);
    }

    public static MistralConfig Tiny(int? window = 6) => new()
    {
        VocabSize = 97,
        HiddenSize = 32,
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

    public static MistralForCausalLM RandomModel(MistralConfig config, long seed = 1, ScalarType dtype = ScalarType.Float32)
    {
        var model = new MistralForCausalLM(config, dtype, CPU);
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

    /// <summary>Same shape and bit-identical values (torch.equal in TorchSharp is elementwise).</summary>
    public static bool Exactly(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype)
        {
            return false;
        }

        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }

    public static string TempDir()
    {
        string d = Path.Combine(Path.GetTempPath(), "mistral-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}
