using FluentAssertions;
using Mistral.Peft.Training;
using Xunit;

namespace Mistral.Peft.Tests.Training;

/// <summary>
/// <see cref="TrainingOptions.ForeachOptimizer"/>: the AdamW step, clipping and zeroing over flat buffers give the same
/// run as TorchSharp's per-parameter AdamW — losses, gradient norms, learning rates and trained weights bit for bit —
/// with weight decay, clipping, gradient accumulation, a schedule and all-linear LoRA (several shapes per group).
/// </summary>
[Collection("default generator")] // LoRA dropout draws from the default generator
public class ForeachOptimizerTests
{
    private static LoraTrainingOptions Options(bool foreachOptimizer) =>
        TrainingFixture.SixStepOptions() with { MaxGradNorm = 0.3, ForeachOptimizer = foreachOptimizer };

    [Fact]
    public void TheFlatStepEqualsThePerParameterStepBitForBit()
    {
        var data = TrainingFixture.RandomBlocks(12);
        TrainingResult perParameter;
        List<float[]> perParameterWeights;
        using (var f = new TrainingFixture(allLinear: true))
        {
            perParameter = new LoraTrainer().Train(f.Model, f.Lora, data, Options(foreachOptimizer: false));
            perParameterWeights = f.Weights();
        }

        TrainingResult flat;
        List<float[]> flatWeights;
        using (var f = new TrainingFixture(allLinear: true))
        {
            flat = new LoraTrainer().Train(f.Model, f.Lora, data, Options(foreachOptimizer: true));
            flatWeights = f.Weights();
            f.Lora.AdapterParameters().Where(p => p.grad is not null).Should().BeEmpty("the flat gradient buffers are released when training ends");
        }

        flat.Steps.Should().HaveCount(6);
        flat.Steps.Select(s => s.Loss).Should().Equal(perParameter.Steps.Select(s => s.Loss));
        flat.Steps.Select(s => s.GradNorm).Should().Equal(perParameter.Steps.Select(s => s.GradNorm));
        flat.Steps.Select(s => s.LearningRate).Should().Equal(perParameter.Steps.Select(s => s.LearningRate));
        TrainingFixture.MaxAbsDiff(flatWeights, perParameterWeights).Should().Be(0.0);
        TrainingFixture.MaxAbsDiff(flatWeights, perParameterWeights.Select(w => w.Select(_ => 0f).ToArray()).ToList())
            .Should().BeGreaterThan(0, "the adapters were trained");
    }

    [Fact]
    public void MixedDtypesOrAmsGradKeepThePerParameterLoop()
    {
        using var a = new TorchSharp.Modules.Parameter(TorchSharp.torch.ones(3, 4));
        using var b = new TorchSharp.Modules.Parameter(TorchSharp.torch.ones(5, dtype: TorchSharp.torch.ScalarType.Float64));
        using var mixed = TorchSharp.torch.optim.AdamW([a, b]);
        FlatAdamW.TryCreate(mixed).Should().BeNull("a group's flat buffer needs one dtype");

        using var amsgrad = TorchSharp.torch.optim.AdamW([a], amsgrad: true);
        FlatAdamW.TryCreate(amsgrad).Should().BeNull("AMSGrad keeps a third moment the flat step does not carry");

        using var sgd = TorchSharp.torch.optim.SGD([a], 0.1);
        FlatAdamW.TryCreate(sgd).Should().BeNull("only AdamW is flattened");

        using var plain = TorchSharp.torch.optim.AdamW([a]);
        using var flat = FlatAdamW.TryCreate(plain);
        flat.Should().NotBeNull();
        flat!.FlatGradients.Should().ContainSingle().Which.numel().Should().Be(12);
    }
}
