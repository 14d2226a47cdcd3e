using FluentAssertions;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using Mistral.Tests.Shared;
using Xunit;

namespace Mistral.Peft.Tests.Lora;

/// <summary>
/// <see cref="MistralForCausalLM.UseFusedKernels"/> reaches every module with fused CUDA kernels (norms, attention, MLP,
/// 4-bit layers, LoRA layers), and on the CPU (where no fused kernel runs) the setting changes nothing. The kernels
/// themselves are checked against the libtorch ops on the GPU by <c>Mistral.Benchmarks gpucheck</c>.
/// </summary>
public class FusedKernelSwitchTests
{
    [Fact]
    public void TheModelSwitchReachesEveryFusedModuleOfAQLoRAModel()
    {
        using var model = TinyModels.RandomModel();
        LoraTestModels.QuantizeProjections(model);
        LoraInjector.Inject(model, new LoraOptions { R = 4, Alpha = 8, TargetModules = ["q_proj", "down_proj"] });
        var modules = ModuleTree.NamedModules(model).Select(m => m.Module).ToList();
        modules.OfType<LoraLinear>().Should().NotBeEmpty();
        modules.OfType<Linear4bit>().Should().NotBeEmpty();

        model.UseFusedKernels.Should().BeTrue("fused kernels are on by default");
        model.UseFusedKernels = false;
        model.UseFusedKernels.Should().BeFalse();
        modules.OfType<RmsNorm>().Should().OnlyContain(n => !n.UseFusedKernel);
        modules.OfType<MistralAttention>().Should().OnlyContain(a => !a.UseFusedKernels, "the fused attention path is off by default");
        modules.OfType<MistralMlp>().Should().OnlyContain(m => !m.UseFusedKernels);
        modules.OfType<IFusedKernelSwitch>().Should().OnlyContain(m => !m.UseFusedKernels);

        model.UseFusedKernels = true;
        modules.OfType<IFusedKernelSwitch>().Should().OnlyContain(m => m.UseFusedKernels);
        modules.OfType<RmsNorm>().Should().OnlyContain(n => n.UseFusedKernel);
        modules.OfType<MistralAttention>().Should().OnlyContain(a => !a.UseFusedKernels, "UseFusedKernels leaves the attention path alone");

        model.UseFusedAttention.Should().BeFalse();
        model.UseFusedAttention = true;
        modules.OfType<MistralAttention>().Should().OnlyContain(a => a.UseFusedKernels);
        model.UseFusedAttention.Should().BeTrue();
    }

    [Fact]
    public void TheDecodingAndDropoutKernelsAreOnByDefaultAndTheirSwitchesReachEveryLayer()
    {
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, new LoraOptions { R = 4, Alpha = 8, Dropout = 0.1, TargetModules = [LoraOptions.AllLinear] });
        var attentions = ModuleTree.NamedModules(model).Select(m => m.Module).OfType<MistralAttention>().ToList();
        var mlps = ModuleTree.NamedModules(model).Select(m => m.Module).OfType<MistralMlp>().ToList();
        attentions.Should().NotBeEmpty();

        model.UseFusedDecodeAttention.Should().BeTrue("the decoding attention passed the GPU test lane");
        model.UseFusedDecodeProjections.Should().BeTrue("the decoding projections passed the GPU test lane");
        lora.UseFusedDropout.Should().BeTrue("the fused LoRA dropout passed the GPU test lane");

        model.UseFusedDecodeAttention = false;
        attentions.Should().OnlyContain(a => !a.UseFusedDecodeAttention);
        model.UseFusedDecodeProjections = false;
        attentions.Should().OnlyContain(a => !a.UseFusedDecodeProjections);
        mlps.Should().OnlyContain(m => !m.UseFusedDecodeProjections);
        model.UseFusedDecodeProjections.Should().BeFalse();
        model.UseFusedKernels = true;
        model.UseFusedDecodeAttention.Should().BeFalse("UseFusedKernels leaves the decoding switches alone");
        lora.UseFusedDropout = false;
        lora.Layers.Values.Should().OnlyContain(l => !l.UseFusedDropout);
        lora.UseFusedDropout.Should().BeFalse();
        lora.UseFusedProduct.Should().BeTrue("the fused first product is on by default");
        lora.UseFusedProduct = false;
        lora.Layers.Values.Should().OnlyContain(l => !l.UseFusedProduct);
        lora.UseFusedProduct.Should().BeFalse();
        model.UseFusedDecodeProjections = true;
        mlps.Should().OnlyContain(m => m.UseFusedDecodeProjections);
    }

    [Fact]
    public void OnTheCpuTheDecodingKernelSwitchesChangeNoGeneratedToken()
    {
        using var model = TinyModels.RandomModel();
        LoraTestModels.QuantizeProjections(model);
        var generator = new Mistral.Core.Generation.TokenGenerator(model);
        int[][] prompts = [[1, 5, 9, 13], [1, 7]];
        var options = Mistral.Core.Generation.GenerationOptions.Greedy with { MaxNewTokens = 6 };
        model.UseFusedDecodeAttention = false;
        model.UseFusedDecodeProjections = false;
        var plain = generator.Generate(prompts, options);
        model.UseFusedDecodeAttention = true;
        model.UseFusedDecodeProjections = true;
        var fused = generator.Generate(prompts, options);
        fused.Sequences.Select(s => s.TokenIds).Should().BeEquivalentTo(plain.Sequences.Select(s => s.TokenIds), o => o.WithStrictOrdering());
        MistralForCausalLM.FusedKernelStatus.Should().Be("not used yet", "no CUDA tensor ever asked for the kernels in a CPU test run");
    }

    [Fact]
    public void OnTheCpuTheSwitchChangesNoLogit()
    {
        using var model = TinyModels.RandomModel();
        model.eval();
        using var ids = TinyModels.Ids();
        using var fused = TinyModels.Logits(model, ids);
        model.UseFusedKernels = false;
        using var plain = TinyModels.Logits(model, ids);
        TensorChecks.Exactly(fused, plain).Should().BeTrue();
        MistralForCausalLM.FusedKernelStatus.Should().Be("not used yet", "no CUDA tensor ever asked for the kernels in a CPU test run");
    }
}
