using Microsoft.Extensions.Logging;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

/// <summary>Tiny random models and small helpers for the LoRA tests (same idea as Mistral.Core.Tests' TestModels).</summary>
internal static class LoraTestModels
{
    public static string FixturePath(params string[] parts)
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, "tests", "fixtures")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return Path.Combine([dir ?? throw new DirectoryNotFoundException("tests/fixtures not found above the test binaries."), "tests", "fixtures", .. parts]);
    }

    /// <summary>hidden 32, intermediate 48, 2 layers, 4 heads / 1 kv head of 8, vocab 97 (20,704 parameters).</summary>
    public static MistralConfig Tiny(int hidden = 32) => new()
    {
        VocabSize = 97,
        HiddenSize = hidden,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 1,
        HeadDim = 8,
        SlidingWindow = 6,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        MaxPositionEmbeddings = 512,
    };

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

    public static Tensor Ids(long seed = 3, long batch = 2, long seq = 10, long vocab = 97)
    {
        using var gen = new Generator((ulong)seed);
        return randint(3, vocab, [batch, seq], ScalarType.Int64, generator: gen);
    }

    public static Tensor Logits(MistralForCausalLM model, Tensor ids)
    {
        using var guard = no_grad();
        using var output = model.forward(new CausalLMInput(ids));
        return output.Logits.detach().clone();
    }

    public static float MaxAbs(Tensor t)
    {
        using var a = t.abs();
        using var m = a.max();
        return m.item<float>();
    }

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
        string d = Path.Combine(Path.GetTempPath(), "mistral-lora-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}

/// <summary>A logger that keeps every message (for asserting warnings).</summary>
internal sealed class ListLogger : ILogger
{
    public List<(LogLevel Level, string Message)> Entries { get; } = [];

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Add((logLevel, formatter(state, exception)));
}
