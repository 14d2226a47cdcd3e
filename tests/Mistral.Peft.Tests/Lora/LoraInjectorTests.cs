using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

public class LoraInjectorTests
{
    [Fact]
    public void DefaultTargetsAreQAndVOfEveryLayerAndEverythingElseIsFrozen()
    {
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, new LoraOptions { Seed = 1 });
        lora.Layers.Keys.Should().Equal(
            "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
            "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj");
        lora.TargetModuleNames.Should().Equal("q_proj", "v_proj");
        ModuleTree.Get(model, "model.layers.1.self_attn.v_proj").Should().BeOfType<LoraLinear>();

        var names = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        names.Should().HaveCount(8).And.OnlyContain(n => n.EndsWith(".lora_A.weight") || n.EndsWith(".lora_B.weight"));
        names.Should().Contain("model.layers.0.self_attn.q_proj.lora_A.weight");
        model.named_parameters().Select(p => p.name).Should().Contain("model.layers.0.self_attn.q_proj.base_layer.weight");
        lora.NamedAdapterParameters().Select(kv => kv.Key).Should().Contain(
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
        lora.AdapterParameters().Should().HaveCount(8);
    }

    [Fact]
    public void TrainableParameterReportMatchesPeftsFormat()
    {
        // Tiny model: 20,704 base parameters; r=8 on q ([32,32]: 256+256) and v ([8,32]: 256+64) × 2 layers = 1,664.
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, new LoraOptions { Seed = 1 });
        var count = lora.TrainableParameters();
        count.Trainable.Should().Be(1664);
        count.All.Should().Be(22368);
        count.ToString().Should().Be("trainable params: 1,664 || all params: 22,368 || trainable%: 7.4392");
    }

    [Fact]
    public void FourBitWeightsCountTwicePerPackedByteAsPeftDoes()
    {
        using var model = TinyModels.RandomModel();
        LoraTestModels.QuantizeProjections(model);
        var lora = LoraInjector.Inject(model, new LoraOptions { Seed = 1 });
        lora.TrainableParameters().Should().Be(new TrainableParameterCount(1664, 22368));
    }

    [Fact]
    public void AllLinearTakesEveryProjectionButNotLmHead()
    {
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, new LoraOptions { TargetModules = [LoraOptions.AllLinear] });
        lora.Layers.Should().HaveCount(14);
        lora.Layers.Keys.Should().NotContain("lm_head");
        lora.TargetModuleNames.Should().Equal("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj");
    }

    [Fact]
    public void PatternIsAFullMatchAndExcludesApply()
    {
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, new LoraOptions { TargetModulesPattern = @"model\.layers\.1\..*_proj", ExcludeModules = ["mlp.down_proj"] });
        lora.Layers.Keys.Should().HaveCount(6).And.OnlyContain(n => n.StartsWith("model.layers.1.")).And.NotContain("model.layers.1.mlp.down_proj");

        using var other = TinyModels.RandomModel();
        // Not a full match: "q_proj" alone matches no whole name.
        FluentActions.Invoking(() => LoraInjector.Inject(other, new LoraOptions { TargetModulesPattern = "q_proj" }))
            .Should().Throw<ArgumentException>().WithMessage("*TargetModulesPattern 'q_proj' matches no linear layer*");
    }

    [Fact]
    public void UnknownTargetIsNamedAndNothingIsChanged()
    {
        using var model = TinyModels.RandomModel();
        FluentActions.Invoking(() => LoraInjector.Inject(model, new LoraOptions { TargetModules = ["q_proj", "qkv_proj"] }))
            .Should().Throw<ArgumentException>().WithMessage("*TargetModules*[qkv_proj]*");
        model.parameters().Should().OnlyContain(p => p.requires_grad);
        ModuleTree.NamedModules(model).Should().NotContain(m => m.Module is LoraLinear);
    }

    [Fact]
    public void InjectedLayersTakeTheModelsTrainingMode()
    {
        using var model = TinyModels.RandomModel(); // eval mode
        var lora = LoraInjector.Inject(model, new LoraOptions { Dropout = 0.5, Init = LoraInit.LinearDefault, Seed = 2 });
        lora.Layers.Values.Should().OnlyContain(l => !l.training);
        using var ids = TinyModels.Ids();
        using var a = TinyModels.Logits(model, ids);
        using var b = TinyModels.Logits(model, ids);
        TensorChecks.Exactly(a, b).Should().BeTrue("LoRA dropout is off in eval mode");
        model.train();
        lora.Layers.Values.Should().OnlyContain(l => l.training);
        using var c = TinyModels.Logits(model, ids);
        TensorChecks.Exactly(a, c).Should().BeFalse("LoRA dropout is on in training mode");
    }

    [Fact]
    public void InjectingTwiceIsRefused()
    {
        using var model = TinyModels.RandomModel();
        LoraInjector.Inject(model, new LoraOptions());
        FluentActions.Invoking(() => LoraInjector.Inject(model, new LoraOptions()))
            .Should().Throw<InvalidOperationException>().WithMessage("*already contains LoRA*");
    }

    [Fact]
    public void ZeroInitialisedAdapterLeavesLogitsUnchanged()
    {
        using var model = TinyModels.RandomModel();
        using var ids = TinyModels.Ids();
        using var before = TinyModels.Logits(model, ids);
        LoraInjector.Inject(model, new LoraOptions { TargetModules = [LoraOptions.AllLinear], Seed = 4 });
        using var after = TinyModels.Logits(model, ids);
        TensorChecks.Exactly(before, after).Should().BeTrue("B = 0 makes the update exactly zero");
    }

    [Fact]
    public void MergeAndUnloadGivesBackAPlainModelWithTheSameLogits()
    {
        using var model = TinyModels.RandomModel();
        using var ids = TinyModels.Ids();
        var lora = LoraInjector.Inject(model, new LoraOptions { TargetModules = [LoraOptions.AllLinear], Init = LoraInit.LinearDefault, Seed = 4 });
        using var adapted = TinyModels.Logits(model, ids);
        var plain = lora.MergeAndUnload();
        ModuleTree.NamedModules(plain).Should().NotContain(m => m.Module is LoraLinear);
        plain.named_parameters().Select(p => p.name).Should().Contain("model.layers.0.self_attn.q_proj.weight");
        using var merged = TinyModels.Logits(plain, ids);
        TensorChecks.MaxAbs(merged - adapted).Should().BeLessThanOrEqualTo(1e-5f);
    }

    [Fact]
    public void LoraOnFourBitLayersTrainsOnlyTheAdapter()
    {
        using var model = TinyModels.RandomModel();
        LoraTestModels.QuantizeProjections(model);
        var lora = LoraInjector.Inject(model, new LoraOptions { TargetModules = [LoraOptions.AllLinear], Init = LoraInit.LinearDefault, Seed = 4 });
        lora.Layers.Values.Should().OnlyContain(l => l.BaseLayer is Linear4bit);
        model.train();
        using var ids = TinyModels.Ids();
        using (var output = model.forward(new CausalLMInput(ids) { Labels = ids }))
        {
            output.Loss!.backward();
        }

        foreach (var (name, p) in model.named_parameters())
        {
            if (p.requires_grad)
            {
                p.grad.Should().NotBeNull(name);
                TensorChecks.MaxAbs(p.grad!).Should().BeGreaterThan(0f, name);
            }
            else
            {
                p.grad.Should().BeNull(name);
            }
        }

        model.named_parameters().Count(p => p.parameter.requires_grad).Should().Be(28);
        model.named_buffers().Should().OnlyContain(b => !b.buffer.requires_grad);
    }
}
