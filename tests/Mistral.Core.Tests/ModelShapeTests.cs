using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

public class ModelShapeTests
{
    [Fact]
    public void Mistral7BOnMetaHasHuggingFaceNamesAndShapes()
    {
        using var model = new MistralForCausalLM(MistralConfig.Mistral7B, ScalarType.BFloat16, META);
        var actual = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);

        var expected = new Dictionary<string, long[]>
        {
            ["model.embed_tokens.weight"] = [32000, 4096],
            ["model.norm.weight"] = [4096],
            ["lm_head.weight"] = [32000, 4096],
        };
        for (int i = 0; i < 32; i++)
        {
            string p = $"model.layers.{i}.";
            expected[p + "self_attn.q_proj.weight"] = [4096, 4096];
            expected[p + "self_attn.k_proj.weight"] = [1024, 4096];
            expected[p + "self_attn.v_proj.weight"] = [1024, 4096];
            expected[p + "self_attn.o_proj.weight"] = [4096, 4096];
            expected[p + "mlp.gate_proj.weight"] = [14336, 4096];
            expected[p + "mlp.up_proj.weight"] = [14336, 4096];
            expected[p + "mlp.down_proj.weight"] = [4096, 14336];
            expected[p + "input_layernorm.weight"] = [4096];
            expected[p + "post_attention_layernorm.weight"] = [4096];
        }

        actual.Keys.Should().BeEquivalentTo(expected.Keys);
        foreach (var (name, shape) in expected)
        {
            actual[name].Should().Equal(shape, name);
        }

        actual.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)).Should().Be(7_241_732_096L);
        model.named_buffers().Should().BeEmpty("rotary tables are not part of HF's state dict");
        model.parameters().Should().OnlyContain(p => p.device.type == DeviceType.META && p.dtype == ScalarType.BFloat16);
    }

    [Fact]
    public void BaseWeightsAreTrainableParameters()
    {
        using var model = new MistralForCausalLM(TinyModels.Tiny(), ScalarType.Float32, META);
        model.parameters().Should().OnlyContain(p => p.requires_grad);
        var q = (Linear)ModuleTree.Get(model, "model.layers.1.self_attn.q_proj");
        q.InFeatures.Should().Be(32);
        q.OutFeatures.Should().Be(32);
    }

    [Fact]
    public void ReplacingALinearByNameChangesForwardAndStateDict()
    {
        using var model = TinyModels.RandomModel(TinyModels.Tiny(window: null));
        using var ids = tensor(new long[] { 5, 6, 7, 8 }, [1, 4]);
        using var before = model.forward(new CausalLMInput(ids));
        var replacement = new Linear(48, 32, hasBias: false, ScalarType.Float32, CPU);
        using (no_grad())
        {
            replacement.Weight.zero_();
        }

        ModuleTree.Replace(model, "model.layers.0.mlp.down_proj", replacement);
        ModuleTree.Get(model, "model.layers.0.mlp.down_proj").Should().BeSameAs(replacement);
        model.named_parameters().Select(p => p.name).Should().Contain("model.layers.0.mlp.down_proj.weight");
        model.state_dict().Keys.ToList().IndexOf("model.layers.0.mlp.down_proj.weight")
            .Should().Be(model.state_dict().Keys.ToList().IndexOf("model.layers.0.mlp.up_proj.weight") + 1, "registration order is kept");
        using var after = model.forward(new CausalLMInput(ids));
        (after.Logits - before.Logits).abs().max().item<float>().Should().BeGreaterThan(1e-4f);

        Action wrongName = () => ModuleTree.Replace(model, "model.layers.0.mlp.nope", replacement);
        wrongName.Should().Throw<ArgumentException>().WithMessage("*model.layers.0.mlp.nope*");
    }
}
