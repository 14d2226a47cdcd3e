using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

/// <summary>
/// A LoRA model with dropout generates deterministically whatever mode the caller left it in (generation runs in eval
/// mode and gives every module's mode back), and every loader returns its model in eval mode, LoRA layers included.
/// </summary>
[Collection("default generator")] // LoRA dropout draws from the default generator, which trainer tests reseed
public class LoraGenerationModeTests
{
    private static string Folder => TestPaths.FixturePath("hf", "gqa4_window");

    private static MistralForCausalLM LoadBase()
    {
        var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(Folder, "config.json")), ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, Folder);
        return model;
    }

    // LoraOptions.Classification (r 8, alpha 16, dropout 0.1 on q_proj and v_proj) with B drawn at random, so that the
    // adapter (and its dropout) really moves the logits.
    private static LoraModel InjectClassification(MistralForCausalLM model)
    {
        var lora = LoraInjector.Inject(model, LoraOptions.Classification with { Seed = 5 });
        using var gen = new Generator(6);
        using var guard = no_grad();
        foreach (var layer in lora.Layers.Values)
        {
            layer.LoraB.copy_(0.5f * randn(layer.LoraB.shape, ScalarType.Float32, generator: gen));
        }

        return lora;
    }

    [Fact]
    public void GreedyGenerationWithLoraDropoutIsDeterministicInTrainModeAndEqualsEvalMode()
    {
        using var model = LoadBase();
        var lora = InjectClassification(model);
        lora.Options.Dropout.Should().Be(0.1);
        var generator = new TokenGenerator(model);
        var options = GenerationOptions.Greedy with { MaxNewTokens = 16 };
        int[][] prompts = [[1, 17, 40, 93, 5, 211], [1, 250, 3]];

        // Preconditions, so that the test can fail: dropout moves the logits in training mode, and B ≠ 0 matters.
        model.train();
        using (var ids = tensor(new long[] { 1, 17, 40, 93, 5, 211 }, [1, 6]))
        {
            using var a = TinyModels.Logits(model, ids);
            using var b = TinyModels.Logits(model, ids);
            TensorChecks.MaxAbsDiff(a, b).Should().BeGreaterThan(1e-3f, "LoRA dropout is on in training mode");
            model.eval();
            using var adapted = TinyModels.Logits(model, ids);
            using (lora.AdaptersDisabled())
            {
                using var plain = TinyModels.Logits(model, ids);
                TensorChecks.MaxAbsDiff(adapted, plain).Should().BeGreaterThan(1e-2f, "the adapter changes the logits");
            }
        }

        model.train();
        GenerationResult first = generator.Generate(prompts, options);
        GenerationResult second = generator.Generate(prompts, options);
        ModuleModes.Training(model).Should().HaveCount(ModuleModes.Of(model).Count, "the caller's training mode is given back");

        using var reference = LoadBase();
        InjectClassification(reference);
        reference.eval();
        GenerationResult expected = new TokenGenerator(reference).Generate(prompts, options);
        for (int r = 0; r < prompts.Length; r++)
        {
            first.Sequences[r].TokenIds.Should().HaveCount(16);
            first.Sequences[r].TokenIds.Should().Equal(second.Sequences[r].TokenIds, $"row {r}: greedy decoding is deterministic");
            first.Sequences[r].TokenIds.Should().Equal(expected.Sequences[r].TokenIds, $"row {r}: as an eval-mode model generates");
        }
    }

    [Fact]
    public void GenerationRestoresTheModeOfEveryModuleIncludingLoraLayers()
    {
        using var model = LoadBase();
        var lora = InjectClassification(model);
        model.train();
        lora.Layers["model.layers.0.self_attn.q_proj"].eval();
        ModuleTree.Get(model, "model.layers.1.self_attn.v_proj.lora_A").eval();
        ModuleTree.Get(model, "model.layers.1.mlp").eval();
        var before = ModuleModes.Of(model);
        before.Values.Should().Contain(true).And.Contain(false);

        new TokenGenerator(model).Generate([[1, 2, 3]], GenerationOptions.Greedy with { MaxNewTokens = 4 });
        ModuleModes.Of(model).Should().Equal(before);

        using var cts = new CancellationTokenSource();
        Action cancelled = () => new TokenGenerator(model).Generate([[1, 2, 3]], GenerationOptions.Greedy with { MaxNewTokens = 4 },
            (_, _) =>
            {
                cts.Cancel();
                return false;
            }, cts.Token);
        cancelled.Should().Throw<OperationCanceledException>();
        ModuleModes.Of(model).Should().Equal(before);
    }

    [Fact]
    public void InjectedLayersFollowTheModelsModeAllTheWayDown()
    {
        using var trainMode = LoadBase();
        trainMode.train();
        var a = LoraInjector.Inject(trainMode, LoraOptions.Classification);
        ModuleModes.Of(trainMode).Values.Should().OnlyContain(t => t, "injecting into a train-mode model gives train-mode LoRA layers");
        a.Layers.Should().HaveCount(4);

        using var evalMode = LoadBase();
        var b = LoraInjector.Inject(evalMode, LoraOptions.Classification);
        ModuleModes.Training(evalMode).Should().BeEmpty("injecting into an eval-mode model gives eval-mode LoRA layers");
        ModuleModes.Of(evalMode).Keys.Should().Contain("model.layers.1.self_attn.v_proj.lora_B");
    }

    [Fact]
    public void PeftAdapterLoadReturnsTheModelInEvalMode()
    {
        string dir = TestPaths.TempDir();
        try
        {
            using (var source = LoadBase())
            {
                PeftAdapter.Save(InjectClassification(source), dir);
            }

            using var model = LoadBase();
            model.train();
            var lora = PeftAdapter.Load(model, dir);
            lora.Layers.Should().HaveCount(4);
            ModuleModes.Training(model).Should().BeEmpty();
            ModuleModes.Of(model).Keys.Should().Contain("model.layers.0.self_attn.q_proj.lora_A");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void QuantizedLoadersReturnTheModelInEvalMode()
    {
        string dir = TestPaths.TempDir();
        try
        {
            using (var quantized = QuantizedModelLoader.Load(Folder).Model)
            {
                ModuleModes.Training(quantized).Should().BeEmpty();
                ModuleModes.Of(quantized).Keys.Should().Contain("model.layers.0.mlp.up_proj");
                ModuleTree.Get(quantized, "model.layers.0.mlp.up_proj").Should().BeOfType<Linear4bit>();
                QuantizedCheckpoint.Save(quantized, dir);
            }

            using var again = QuantizedModelLoader.LoadPrequantized(dir).Model;
            ModuleModes.Training(again).Should().BeEmpty();
            using var viaLoad = QuantizedModelLoader.Load(dir).Model;
            ModuleModes.Training(viaLoad).Should().BeEmpty();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
