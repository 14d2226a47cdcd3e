using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

public class WeightInitializerTests(ITestOutputHelper output)
{
    [Fact]
    public void WeightsAreNormalWithTheRangeNormsOneAndThePaddingRowZero()
    {
        using var model = new MistralForCausalLM(TinyModels.Tiny() with { PadTokenId = 0 });
        WeightInitializer.Initialize(model, seed: 5);
        var values = FullTrainingTests.Snapshot(model);
        var norms = values.Where(kv => kv.Key.EndsWith("norm.weight", StringComparison.Ordinal)).ToList();
        norms.Should().HaveCount(5).And.OnlyContain(kv => kv.Value.All(x => x == 1f));
        values["model.embed_tokens.weight"][..32].Should().OnlyContain(x => x == 0f, "the pad token's row is zero");

        double[] drawn = [.. values.Where(kv => !kv.Key.EndsWith("norm.weight", StringComparison.Ordinal))
            .SelectMany(kv => kv.Key == "model.embed_tokens.weight" ? kv.Value[32..] : kv.Value).Select(x => (double)x)];
        double mean = drawn.Average();
        double std = Math.Sqrt(drawn.Sum(x => (x - mean) * (x - mean)) / (drawn.Length - 1));
        output.WriteLine($"{drawn.Length} drawn weights: mean {mean:E2}, std {std:F5}");
        drawn.Length.Should().Be(20_704 - 5 * 32 - 32);
        std.Should().BeApproximately(0.02, 0.02 * 0.02, "the sample std of 20k normal draws is within 2% of σ");
        Math.Abs(mean).Should().BeLessThan(4 * 0.02 / Math.Sqrt(drawn.Length));
    }

    [Fact]
    public void TheValuesDependOnlyOnTheSeedNotOnTheDtype()
    {
        using var a = new MistralForCausalLM(TinyModels.Tiny());
        using var b = new MistralForCausalLM(TinyModels.Tiny());
        using var c = new MistralForCausalLM(TinyModels.Tiny());
        using var half = new MistralForCausalLM(TinyModels.Tiny(), ScalarType.BFloat16);
        WeightInitializer.Initialize(a, seed: 9);
        WeightInitializer.Initialize(b, seed: 9);
        WeightInitializer.Initialize(c, seed: 10);
        WeightInitializer.Initialize(half, seed: 9, initializerRange: 0.02);
        var first = FullTrainingTests.Snapshot(a);
        FullTrainingTests.Changed(first, FullTrainingTests.Snapshot(b)).Should().BeEmpty();
        FullTrainingTests.Changed(first, FullTrainingTests.Snapshot(c)).Should().HaveCount(16, "every drawn tensor differs for another seed (the 5 norms are 1 either way)");
        foreach (var (name, p) in half.named_parameters())
        {
            using var rounded = tensor(first[name], p.shape).to_type(ScalarType.BFloat16);
            TensorChecks.Exactly(p, rounded).Should().BeTrue($"{name} is the float32 draw rounded to bfloat16");
        }
    }

    [Fact]
    public void AModelPretrainedFromScratchStartsAtUniformLossAndLearns()
    {
        // Built uninitialised, initialised, trained: at 0.02 the logits are nearly flat, so the first loss is ≈ ln 97.
        int[] phrase = [10, 11, 12, 13, 14];
        var data = new SftPacker(new SftPackingOptions { SequenceLength = 12 }).Pack(Enumerable.Repeat<IReadOnlyList<int>>(phrase, 24));
        using var model = new MistralForCausalLM(TinyModels.Tiny());
        WeightInitializer.Initialize(model, seed: 1);
        var result = new CausalLMTrainer().Train(model, TrainableSelection.All, data, new TrainingOptions
        {
            Epochs = 16, LearningRate = 1e-2, Schedule = LearningRateSchedule.Linear, WarmupSteps = 2, WeightDecay = 0.01, MaxGradNorm = 1.0,
        });
        output.WriteLine($"first step loss {result.Steps[0].Loss:F4} (ln 97 = {Math.Log(97):F4}); epoch losses {string.Join(" ", result.EpochLosses.Select(l => l.ToString("F3")))}");
        result.Steps[0].Loss.Should().BeApproximately(Math.Log(97), 0.1, "the logits spread by ≈ 0.02·√32 ≈ 0.11 around 0");
        result.EpochLosses[^1].Should().BeLessThan(0.1 * result.EpochLosses[0]);
    }

    [Fact]
    public void OnlyDenseModelsAndAPositiveRangeAreAccepted()
    {
        using var f = new TrainingFixture();
        FluentActions.Invoking(() => WeightInitializer.Initialize(f.Model, 1)).Should().Throw<ArgumentException>().WithMessage("*'model.layers.0.self_attn.q_proj' is a LoraLinear*");
        using var model = new MistralForCausalLM(TinyModels.Tiny());
        FluentActions.Invoking(() => WeightInitializer.Initialize(model, 1, initializerRange: 0)).Should().Throw<ArgumentException>()
            .WithMessage("initializerRange must be a positive finite number; got 0.*");
    }
}
