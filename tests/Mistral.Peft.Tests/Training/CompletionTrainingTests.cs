using Mistral.Core.Modeling;
using Mistral.Peft.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

/// <summary>Completion-only training with <see cref="LoraTrainer"/> on the tiny random model of <see cref="TrainingFixture"/>.</summary>
public class CompletionTrainingTests(ITestOutputHelper output)
{
    /// <summary>5 pairs of different prompt and target lengths (ids in [3, 97)).</summary>
    internal static CompletionDataset RaggedData(int maxLength = 512)
    {
        using var gen = new Generator(23);
        (int Prompt, int Target)[] shapes = [(6, 3), (2, 9), (11, 1), (4, 4), (1, 6)];
        var pairs = shapes.Select(s => new TokenizedCompletion(
            randint(3, 97, [s.Prompt], ScalarType.Int32, generator: gen).data<int>().ToArray(),
            randint(3, 97, [s.Target], ScalarType.Int32, generator: gen).data<int>().ToArray())).ToList();
        return new SftCompletionBuilder(new SftCompletionOptions { MaxLength = maxLength }).Build(pairs);
    }

    [Fact]
    public void TheStepLossIsTheSumOfTargetTokenLossesOverTheStepsTargetTokens()
    {
        // Micro-batches [0] (4 targets) and [1, 2, 3, 4] (24 targets, padded to 14): the step's loss and gradients must equal those
        // of Σ token losses / Σ target tokens computed one unpadded example at a time (padding never attended, never in
        // the loss; no mean of micro-batch means).
        var data = RaggedData();
        int[][] group = [[0], [1, 2, 3, 4]];
        using var f = new TrainingFixture(allLinear: true);
        f.Model.train();
        var step = TrainingLoop.AccumulateStep(f.Model, data, group, CPU, CancellationToken.None);
        double loss = step.Weights.Select((w, i) => w * step.Losses[i].item<float>()).Sum();
        double meanOfMeans = step.Losses.Average(l => (double)l.item<float>());
        step.Losses.ToList().ForEach(l => l.Dispose());
        var grads = f.Lora.AdapterParameters().Select(p => p.grad!.data<float>().ToArray()).ToList();
        step.TargetTokens.Should().Be(data.TargetTokenCount).And.Be(3 + 1 + 9 + 1 + 1 + 1 + 4 + 1 + 6 + 1);
        step.Weights.Should().Equal(4.0 / 28, 24.0 / 28);

        using var g = new TrainingFixture(allLinear: true);
        g.Model.train();
        double direct = 0;
        foreach (var s in data.Sequences)
        {
            using var scope = NewDisposeScope();
            Tensor ids = tensor(s.InputIds.Select(x => (long)x).ToArray(), [1, s.Length]);
            Tensor labels = tensor(s.Labels().Select(x => (long)x).ToArray(), [1, s.Length]);
            using var o = g.Model.forward(new CausalLMInput(ids));
            Tensor sum = nn.functional.cross_entropy(o.Logits[0, ..^1], labels[0, 1..], ignore_index: -100, reduction: nn.Reduction.Sum);
            (sum / data.TargetTokenCount).backward();
            direct += sum.item<float>() / data.TargetTokenCount;
        }

        var directGrads = g.Lora.AdapterParameters().Select(p => p.grad!.data<float>().ToArray()).ToList();
        double gradDiff = TrainingFixture.MaxAbsDiff(grads, directGrads);
        double gradScale = directGrads.SelectMany(x => x).Max(x => Math.Abs((double)x));
        output.WriteLine($"step loss {loss:R}, per-example reference {direct:R}, mean of micro-batch means {meanOfMeans:R}; max |Δgrad| {gradDiff:E2} of max |grad| {gradScale:E2}");
        loss.Should().BeApproximately(direct, 1e-6 * direct);
        Math.Abs(meanOfMeans - direct).Should().BeGreaterThan(1e-3, "the micro-batches' means differ, so the normalization matters");
        gradDiff.Should().BeLessThanOrEqualTo(1e-6 * gradScale);
    }

    [Fact]
    public void HowAStepIsSplitIntoMicroBatchesDoesNotChangeTheUpdate()
    {
        // One step over 4 examples as 4 × 1, 2 × 2 and 1 × 4: normalizing over the step's target tokens makes the three
        // identical up to float rounding. AdamW with eps 1 moves each weight by ≈ −lr·g/(|g|+1), so the weights measure g.
        var data = RaggedData();
        var common = new LoraTrainingOptions { Epochs = 1, LearningRate = 1, AdamEpsilon = 1, Shuffle = false, GradientCheckpointing = false };
        var runs = new List<(TrainingStep Step, List<float[]> Weights)>();
        foreach (var (batch, accumulation) in new[] { (4, 1), (2, 2), (1, 4) })
        {
            using var f = new TrainingFixture();
            var r = new LoraTrainer().Train(f.Model, f.Lora, new SftCompletionBuilder().Build(PairsOf(data).Take(4)), common with
            {
                PerDeviceBatchSize = batch, GradientAccumulationSteps = accumulation,
            });
            runs.Add((r.Steps.Should().ContainSingle().Subject, f.Weights()));
        }

        output.WriteLine(string.Join("; ", runs.Select(r => $"{r.Step.MicroBatches} micro-batches: loss {r.Step.Loss:R}, norm {r.Step.GradNorm:R}")));
        runs.Select(r => r.Step.TargetTokens).Should().OnlyContain(t => t == 4 + 10 + 2 + 5);
        runs.Select(r => r.Step.Tokens).Should().OnlyContain(t => t == 11 + 13 + 14 + 10);
        foreach (var r in runs.Skip(1))
        {
            r.Step.Loss.Should().BeApproximately(runs[0].Step.Loss, 1e-6 * runs[0].Step.Loss);
            r.Step.GradNorm.Should().BeApproximately(runs[0].Step.GradNorm, 1e-5 * runs[0].Step.GradNorm);
            TrainingFixture.MaxAbsDiff(r.Weights, runs[0].Weights).Should().BeLessThanOrEqualTo(1e-6);
        }
    }

    [Fact]
    public void TrainingOnTargetsLearnsTheTargetsAndReportsTheData()
    {
        // Random prompts (ids ≥ 10) ending in a marker (3), always the same 3-token answer: the target loss must fall far
        // (to ≈ 1.95 here: with a frozen random lm_head and final norm the tiny model's logit margins are bounded).
        using var gen = new Generator(31);
        var pairs = Enumerable.Range(0, 12).Select(i => new TokenizedCompletion(
            [.. randint(10, 97, [3 + (i % 5)], ScalarType.Int32, generator: gen).data<int>(), 3], [40, 41, 42])).ToList();
        var data = new SftCompletionBuilder().Build(pairs);
        using var f = new TrainingFixture(allLinear: true);
        var progress = new ListProgress();
        var result = new LoraTrainer().Train(f.Model, f.Lora, data,
            new LoraTrainingOptions { Epochs = 12, PerDeviceBatchSize = 4, GradientAccumulationSteps = 1, LearningRate = 3e-2 }, progress);
        output.WriteLine($"{data.Describe()}; epoch losses {string.Join(" ", result.EpochLosses.Select(l => l.ToString("F3")))}");
        result.Steps.Should().HaveCount(12 * 3);
        result.Steps.Should().OnlyContain(s => s.TargetTokens == 16);
        result.Tokens.Should().Be(12 * data.TokenCount);
        progress.Reports.Select(p => p.Step).Should().Equal(Enumerable.Range(1, 36));
        result.EpochLosses[^1].Should().BeLessThan(0.5 * result.EpochLosses[0]);
    }

    [Fact]
    public void TokenIdsOutsideTheVocabularyAreRejectedBeforeTheFirstStep()
    {
        using var f = new TrainingFixture(); // vocabulary 97: ids 0…96
        var before = f.Weights();
        var options = new LoraTrainingOptions();
        var blocks = new PackedDataset([[5, 6, 7, 8], [9, 10, 97, 11]], 4);
        FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, blocks, options))
            .Should().Throw<ArgumentException>()
            .WithMessage("data block 1 holds token id 97 at position 2, outside the model's vocabulary (ids 0 to 96; vocab_size 97)*")
            .Which.ParamName.Should().Be("data");

        var examples = new SftCompletionBuilder(new SftCompletionOptions { MaxLength = 4 })
            .Build([new([3], [4]), new([3, 3, 3, 3], [4]), new([5], [6, 1000])]);
        FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, examples, options))
            .Should().Throw<ArgumentException>()
            .WithMessage("data example 1 (pair 2) holds token id 1000 at position 3, outside the model's vocabulary*");

        var badPad = new SftCompletionBuilder(new SftCompletionOptions { PadId = 200 }).Build([new([3], [4])]);
        FluentActions.Invoking(() => new LoraTrainer().Train(f.Model, f.Lora, badPad, options))
            .Should().Throw<ArgumentException>().WithMessage("data's padding id 200 (SftCompletionOptions.PadId*");
        TrainingFixture.MaxAbsDiff(before, f.Weights()).Should().Be(0);
        f.Model.training.Should().BeFalse();
    }

    private static IEnumerable<TokenizedCompletion> PairsOf(CompletionDataset data) =>
        data.Sequences.Select(s => new TokenizedCompletion(s.InputIds.Skip(1).Take(s.PromptLength - 1).ToArray(), s.InputIds.Skip(s.PromptLength).SkipLast(1).ToArray()));
}
