using Microsoft.Extensions.Logging;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using Xunit.Abstractions;
using static TorchSharp.torch;
using CoreLinear = Mistral.Core.Modeling.Linear;

namespace Mistral.Peft.Tests.Lora;

public class LoraMergeTests(ITestOutputHelper output)
{
    private static LoraOptions Random(long seed = 4) => new() { TargetModules = [LoraOptions.AllLinear], R = 4, Alpha = 8, Init = LoraInit.LinearDefault, Seed = seed };

    [Fact]
    public void MergedForwardEqualsUnmergedForwardAndUnmergeRestoresTheWeights()
    {
        using var model = TinyModels.RandomModel();
        using var ids = TinyModels.Ids();
        var q = (CoreLinear)ModuleTree.Get(model, "model.layers.0.self_attn.q_proj");
        using var original = q.Weight.detach().clone();
        using var baseLogits = TinyModels.Logits(model, ids);
        var lora = LoraInjector.Inject(model, Random());
        using var unmerged = TinyModels.Logits(model, ids);
        float effect = TensorChecks.MaxAbs(unmerged - baseLogits);
        effect.Should().BeGreaterThan(0.05f, "a random adapter must visibly change the logits");

        lora.Merge();
        lora.IsMerged.Should().BeTrue();
        using var merged = TinyModels.Logits(model, ids);
        float dMerged = TensorChecks.MaxAbs(merged - unmerged);
        TensorChecks.MaxAbs(q.Weight - original).Should().BeGreaterThan(0f);

        lora.Unmerge();
        lora.IsMerged.Should().BeFalse();
        float dWeight = TensorChecks.MaxAbs(q.Weight - original);
        using var again = TinyModels.Logits(model, ids);
        float dAgain = TensorChecks.MaxAbs(again - unmerged);
        output.WriteLine($"adapter effect {effect:E2}; merged vs unmerged {dMerged:E2}; weight after unmerge {dWeight:E2}; logits after unmerge {dAgain:E2}");
        dMerged.Should().BeLessThanOrEqualTo(1e-5f);
        dWeight.Should().BeLessThanOrEqualTo(1e-7f);
        dAgain.Should().BeLessThanOrEqualTo(1e-5f);
    }

    [Fact]
    public void MergeAddsTheFloat32DeltaAndCastsOnceIntoABFloat16Base()
    {
        using var model = TinyModels.RandomModel(dtype: ScalarType.BFloat16);
        var q = (CoreLinear)ModuleTree.Get(model, "model.layers.0.self_attn.q_proj");
        using var original = q.Weight.detach().clone();
        var lora = LoraInjector.Inject(model, Random());
        var layer = lora.Layers["model.layers.0.self_attn.q_proj"];
        using var delta = layer.DeltaWeight();
        delta.dtype.Should().Be(ScalarType.Float32);
        using var expectedDelta = matmul(layer.LoraB.detach(), layer.LoraA.detach()) * 2.0;
        TensorChecks.MaxAbs(delta - expectedDelta).Should().Be(0f);
        lora.Merge();
        using var expected = (original.to(ScalarType.Float32) + delta).to(ScalarType.BFloat16);
        TensorChecks.Exactly(q.Weight, expected).Should().BeTrue();
    }

    [Fact]
    public void DisabledAdapterGivesTheBaseLogitsExactly()
    {
        using var model = TinyModels.RandomModel();
        using var ids = TinyModels.Ids();
        using var baseLogits = TinyModels.Logits(model, ids);
        var lora = LoraInjector.Inject(model, Random());
        using var adapted = TinyModels.Logits(model, ids);
        TensorChecks.Exactly(adapted, baseLogits).Should().BeFalse();

        using (lora.AdaptersDisabled())
        {
            lora.AdaptersEnabled.Should().BeFalse();
            using var disabled = TinyModels.Logits(model, ids);
            TensorChecks.Exactly(disabled, baseLogits).Should().BeTrue();
        }

        lora.AdaptersEnabled.Should().BeTrue();
        using var back = TinyModels.Logits(model, ids);
        TensorChecks.Exactly(back, adapted).Should().BeTrue();

        // Disabling a merged adapter unmerges it first (as PEFT does).
        lora.Merge();
        lora.DisableAdapters();
        lora.IsMerged.Should().BeFalse();
        using var disabledAfterMerge = TinyModels.Logits(model, ids);
        TensorChecks.MaxAbs(disabledAfterMerge - baseLogits).Should().BeLessThanOrEqualTo(1e-5f);
    }

    [Fact]
    public void MergingIntoFourBitRequantizesWithAWarningAndLosesAboutOneQuantizationsError()
    {
        // Re-quantizing W + Δ costs one more NF4 rounding: the merged logits should differ from the unmerged adapter's
        // by about as much as quantizing the dense model once changed its logits.
        using var model = TinyModels.RandomModel();
        using var ids = TinyModels.Ids();
        using var denseLogits = TinyModels.Logits(model, ids);
        LoraTestModels.QuantizeProjections(model);
        using var baseLogits = TinyModels.Logits(model, ids);
        float quantizationError = TensorChecks.MaxAbs(baseLogits - denseLogits);
        var logger = new ListLogger();
        var lora = LoraInjector.Inject(model, Random(), logger);
        using var unmerged = TinyModels.Logits(model, ids);
        var layer = lora.Layers["model.layers.0.mlp.gate_proj"];
        var before = layer.BaseLayer;
        bool beforeTraining = before.training;
        lora.Merge();
        layer.BaseLayer.Should().BeOfType<Linear4bit>().And.NotBeSameAs(before);
        ((Linear4bit)layer.BaseLayer).ComputeDtype.Should().Be(ScalarType.Float32);
        layer.BaseLayer.training.Should().Be(beforeTraining);
        using var merged = TinyModels.Logits(model, ids);
        logger.Entries.Where(e => e.Level == LogLevel.Warning && e.Message.Contains("lossy")).Should().HaveCount(14);
        float effect = TensorChecks.MaxAbs(unmerged - baseLogits);
        float mergeError = TensorChecks.MaxAbs(merged - unmerged);
        output.WriteLine($"4-bit: adapter effect {effect:E2}, one quantization of the dense model {quantizationError:E2}, merged vs unmerged {mergeError:E2}");
        mergeError.Should().BeGreaterThan(0f, "re-quantization is lossy");
        // W + Δ has a larger range than W (Δ is about as large as W here), so its NF4 rounding error is larger too.
        mergeError.Should().BeLessThan(3f * quantizationError);
        mergeError.Should().BeLessThan(0.5f * effect);

        lora.Unmerge();
        using var unmergedAgain = TinyModels.Logits(model, ids);
        float roundTrip = TensorChecks.MaxAbs(unmergedAgain - unmerged);
        output.WriteLine($"4-bit: unmerge then forward vs the original unmerged adapter {roundTrip:E2}");
        roundTrip.Should().BeGreaterThan(0f).And.BeLessThan(3f * quantizationError);
    }

    [Fact]
    public void MergeTwiceWarnsAndChangesNothing()
    {
        using var model = TinyModels.RandomModel();
        var logger = new ListLogger();
        var lora = LoraInjector.Inject(model, Random(), logger);
        var layer = lora.Layers["model.layers.0.mlp.up_proj"];
        layer.Merge();
        var w = (CoreLinear)layer.BaseLayer;
        using var once = w.Weight.detach().clone();
        layer.Merge();
        TensorChecks.Exactly(w.Weight, once).Should().BeTrue();
        logger.Entries.Should().Contain(e => e.Level == LogLevel.Warning && e.Message.Contains("already merged"));
    }
}
