using Microsoft.Extensions.Logging;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests.Reliability;

/// <summary>Issue 11 §2: a non-strict load never leaves a missing tensor as uninitialised memory.</summary>
public class NonStrictLoadTests
{
    [Fact]
    public void MissingTensorsGetTransformersInitialisationAndAWarningNamingThem()
    {
        var config = TinyModels.Tiny() with { InitializerRange = 0.05, PadTokenId = 0 };
        using var source = TinyModels.RandomModel(config);
        var state = source.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        state.Remove("lm_head.weight");
        state.Remove("model.norm.weight");
        state.Remove("model.embed_tokens.weight");
        string dir = TestPaths.TempDir();
        SafeTensorsWriter.Write(Path.Combine(dir, CheckpointReader.SingleFileName), state);

        using var target = new MistralForCausalLM(config, ScalarType.Float32, CPU);
        using (no_grad())
        {
            // What uninitialised memory may hold (the issue saw 5.6e32).
            foreach (var (_, param) in target.named_parameters())
            {
                param.fill_(5.6e32f);
            }
        }

        var logger = new ListLogger();
        CheckpointLoader.Load(target, dir, new CheckpointLoadOptions { Strict = false }, logger: logger);

        var p = target.named_parameters().ToDictionary(kv => kv.name, kv => (Tensor)kv.parameter);
        var head = p["lm_head.weight"];
        head.std().item<float>().Should().BeInRange(0.04f, 0.06f);
        head.mean().item<float>().Should().BeInRange(-0.01f, 0.01f);
        TensorChecks.Exactly(p["model.norm.weight"], ones(32)).Should().BeTrue();
        var embed = p["model.embed_tokens.weight"];
        embed[0].abs().max().item<float>().Should().Be(0, "the pad row is zero, as HF's padding_idx");
        embed.std().item<float>().Should().BeInRange(0.04f, 0.06f);
        TensorChecks.Exactly(p["model.layers.0.mlp.gate_proj.weight"], state["model.layers.0.mlp.gate_proj.weight"]).Should().BeTrue();
        logger.Warnings.Should().ContainSingle().Which.Should().Contain("lm_head.weight").And.Contain("model.norm.weight")
            .And.Contain("model.embed_tokens.weight").And.Contain("initialised").And.Contain(dir);
        using var ids = TinyModels.Ids();
        using var logits = TinyModels.Logits(target, ids);
        logits.isfinite().all().item<bool>().Should().BeTrue();
        TensorChecks.MaxAbs(logits).Should().BeLessThan(10);
    }

    [Fact]
    public void InitialisationIsSeededAndOverridable()
    {
        var config = TinyModels.Tiny();
        using var source = TinyModels.RandomModel(config);
        var state = source.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        state.Remove("lm_head.weight");
        string dir = TestPaths.TempDir();
        SafeTensorsWriter.Write(Path.Combine(dir, CheckpointReader.SingleFileName), state);

        using var a = new MistralForCausalLM(config);
        using var b = new MistralForCausalLM(config);
        var options = new CheckpointLoadOptions { Strict = false, InitializerRange = 0.5, InitializationSeed = 7 };
        CheckpointLoader.Load(a, dir, options);
        CheckpointLoader.Load(b, dir, options);
        TensorChecks.Exactly(((Linear)a.LmHead).Weight, ((Linear)b.LmHead).Weight).Should().BeTrue();
        ((Linear)a.LmHead).Weight.std().item<float>().Should().BeInRange(0.4f, 0.6f);
    }

    [Fact]
    public void AMissingTensorThatCannotBeInitialisedFailsTheLoad()
    {
        string dir = TestPaths.TempDir();
        using (Tensor other = ones(2))
        {
            SafeTensorsWriter.Write(Path.Combine(dir, CheckpointReader.SingleFileName), new Dictionary<string, Tensor> { ["other"] = other });
        }

        using var module = new Foreign();
        FluentActions.Invoking(() => CheckpointLoader.Load(module, dir, new CheckpointLoadOptions { Strict = false }))
            .Should().Throw<CheckpointMismatchException>().WithMessage("*missing (1): scale*cannot be initialised*")
            .Which.Missing.Should().Equal("scale");
    }

    private sealed class Foreign : nn.Module
    {
        private readonly TorchSharp.Modules.Parameter scale = new(empty(3));

        public Foreign()
            : base(nameof(Foreign))
        {
            RegisterComponents();
        }
    }

    private sealed class ListLogger : ILogger
    {
        public List<string> Warnings { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel == LogLevel.Warning)
            {
                Warnings.Add(formatter(state, exception));
            }
        }
    }
}
