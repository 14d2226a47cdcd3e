using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

/// <summary>
/// Generation runs in eval mode whatever mode the caller left the model in, and gives the caller's mode back, module by
/// module, afterwards (also when it throws or is cancelled). Loading leaves a model in eval mode.
/// </summary>
public class GenerationModeTests
{
    private static string Folder => TestPaths.FixturePath("hf", "gqa4_window");

    [Fact]
    public void CheckpointLoaderLeavesEveryModuleInEvalMode()
    {
        using var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(Folder, "config.json")), ScalarType.Float32, CPU);
        model.training.Should().BeTrue("a new TorchSharp module starts in training mode (the precondition of this test)");
        CheckpointLoader.Load(model, Folder);
        ModuleModes.Training(model).Should().BeEmpty();
        ModuleModes.Of(model).Should().HaveCountGreaterThan(20);
    }

    [Fact]
    public void GreedyGenerationOfATrainModeModelIsDeterministicAndEqualsEvalMode()
    {
        using var model = LoadedWithProbe(out ModeProbe probe);
        var generator = new TokenGenerator(model);
        var options = GenerationOptions.Greedy with { MaxNewTokens = 12 };
        int[][] prompts = [[1, 17, 40, 93, 5], [1, 250, 3]];

        // Precondition: in training mode the probe's dropout really changes the logits (so the test can fail).
        model.train();
        using (var ids = tensor(new long[] { 1, 17, 40, 93, 5 }, [1, 5]))
        {
            using var a = TinyModels.Logits(model, ids);
            using var b = TinyModels.Logits(model, ids);
            TensorChecks.Exactly(a, b).Should().BeFalse("the probe applies dropout in training mode");
        }

        probe.Calls.Clear();
        model.train();
        GenerationResult first = generator.Generate(prompts, options);
        GenerationResult second = generator.Generate(prompts, options);
        probe.Calls.Should().NotBeEmpty().And.OnlyContain(training => !training, "every forward of a generation runs in eval mode");

        model.eval();
        GenerationResult reference = generator.Generate(prompts, options);
        for (int r = 0; r < prompts.Length; r++)
        {
            first.Sequences[r].TokenIds.Should().HaveCount(12);
            first.Sequences[r].TokenIds.Should().Equal(second.Sequences[r].TokenIds, $"row {r}: greedy decoding is deterministic");
            first.Sequences[r].TokenIds.Should().Equal(reference.Sequences[r].TokenIds, $"row {r}: a train-mode model generates as in eval mode");
        }
    }

    [Fact]
    public void GenerationRestoresEachModulesMode()
    {
        using var model = LoadedWithProbe(out _);
        var generator = new TokenGenerator(model);
        var options = GenerationOptions.Greedy with { MaxNewTokens = 3 };

        model.train();
        generator.Generate([[1, 2, 3]], options);
        ModuleModes.Training(model).Should().HaveCount(ModuleModes.Of(model).Count, "a train-mode model stays in training mode");

        model.eval();
        generator.Generate([[1, 2, 3]], options);
        ModuleModes.Training(model).Should().BeEmpty("an eval-mode model stays in eval mode");

        // A mixed tree: the root in training mode, one decoder layer and one projection of the other in eval mode.
        SetMixedModes(model);
        var before = ModuleModes.Of(model);
        before.Values.Should().Contain(true).And.Contain(false);
        generator.Generate([[1, 2, 3]], options);
        ModuleModes.Of(model).Should().Equal(before);
    }

    [Fact]
    public void GenerationRestoresModesWhenAForwardThrows()
    {
        using var model = LoadedWithProbe(out ModeProbe probe);
        SetMixedModes(model);
        var before = ModuleModes.Of(model);
        probe.ThrowOnCall = 3; // the prefill is call 1: this throws in the second decode step
        Action act = () => new TokenGenerator(model).Generate([[1, 2, 3]], GenerationOptions.Greedy with { MaxNewTokens = 6 });
        act.Should().Throw<InvalidOperationException>().WithMessage("probe: forward 3");
        probe.Calls.Should().Equal(false, false, false);
        ModuleModes.Of(model).Should().Equal(before);
    }

    [Fact]
    public void GenerationRestoresModesWhenCancelled()
    {
        using var model = LoadedWithProbe(out _);
        SetMixedModes(model);
        var before = ModuleModes.Of(model);
        using var cts = new CancellationTokenSource();
        int seen = 0;
        Action act = () => new TokenGenerator(model).Generate([[1, 2, 3]], GenerationOptions.Greedy with { MaxNewTokens = 6 },
            (_, _) =>
            {
                if (++seen == 2)
                {
                    cts.Cancel();
                }

                return false;
            }, cts.Token);
        act.Should().Throw<OperationCanceledException>();
        seen.Should().Be(2);
        ModuleModes.Of(model).Should().Equal(before);

        // Cancelled before the prefill: same.
        Action early = () => new TokenGenerator(model).Generate([[1, 2, 3]], GenerationOptions.Greedy, cancellationToken: cts.Token);
        early.Should().Throw<OperationCanceledException>();
        ModuleModes.Of(model).Should().Equal(before);
    }

    private static void SetMixedModes(MistralForCausalLM model)
    {
        model.train();
        ModuleTree.Get(model, "model.layers.1").eval();
        ModuleTree.Get(model, "model.layers.0.mlp.down_proj").eval();
    }

    // The tiny HF checkpoint with layer 0's q_proj wrapped by a probe whose forward depends on the mode (dropout in
    // training, as a LoRA layer's), recording the mode of each call.
    private static MistralForCausalLM LoadedWithProbe(out ModeProbe probe)
    {
        var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(Folder, "config.json")), ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, Folder);
        const string name = "model.layers.0.self_attn.q_proj";
        probe = new ModeProbe((Linear)ModuleTree.Get(model, name));
        ModuleTree.Replace(model, name, probe);
        return model;
    }

    private sealed class ModeProbe : nn.Module<Tensor, Tensor>, ILinearLayer
    {
#pragma warning disable IDE0044 // registered as a child by RegisterComponents
        private Linear inner;
#pragma warning restore IDE0044

        public ModeProbe(Linear inner)
            : base(nameof(ModeProbe))
        {
            this.inner = inner;
            RegisterComponents();
            train(inner.training);
        }

        public List<bool> Calls { get; } = [];

        public int ThrowOnCall { get; set; }

        public long InFeatures => inner.InFeatures;

        public long OutFeatures => inner.OutFeatures;

        public override Tensor forward(Tensor input)
        {
            Calls.Add(training);
            if (Calls.Count == ThrowOnCall)
            {
                throw new InvalidOperationException($"probe: forward {Calls.Count}");
            }

            Tensor y = inner.forward(input);
            if (!training)
            {
                return y;
            }

            using (y)
            {
                return nn.functional.dropout(y, 0.5, true);
            }
        }
    }
}
