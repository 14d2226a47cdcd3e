using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using Mistral.Peft.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

/// <summary>Full-parameter and subset training with <see cref="CausalLMTrainer"/> on a tiny random Mistral.</summary>
public class FullTrainingTests(ITestOutputHelper output)
{
    /// <summary>Copies of every parameter, by name, in <c>named_parameters</c> order.</summary>
    internal static Dictionary<string, float[]> Snapshot(MistralForCausalLM model) =>
        model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().cpu().data<float>().ToArray());

    /// <summary>The names whose values differ (bit for bit) between two snapshots.</summary>
    internal static List<string> Changed(Dictionary<string, float[]> before, Dictionary<string, float[]> after) =>
        before.Where(kv => !kv.Value.AsSpan().SequenceEqual(after[kv.Key])).Select(kv => kv.Key).ToList();

    [Fact]
    public void FullTrainingOfARandomModelLearnsARepeatedPhrase()
    {
        // BOS 10 11 12 13 14 EOS, 24 times, packed into 12-token blocks: every next token is determined by the previous one,
        // so the loss can go from ≈ ln 97 = 4.57 (a random model over 97 tokens) towards 0.
        int[] phrase = [10, 11, 12, 13, 14];
        var data = new SftPacker(new SftPackingOptions { SequenceLength = 12 }).Pack(Enumerable.Repeat<IReadOnlyList<int>>(phrase, 24));
        using var model = TinyModels.RandomModel(seed: 1);
        var before = Snapshot(model);
        var options = new TrainingOptions
        {
            Epochs = 16, LearningRate = 1e-2, Schedule = LearningRateSchedule.Cosine, WarmupRatio = 0.1, WeightDecay = 0.01, MaxGradNorm = 1.0, Seed = 7,
        };
        var result = new CausalLMTrainer().Train(model, TrainableSelection.All, data, options);
        output.WriteLine($"epoch losses {string.Join(" ", result.EpochLosses.Select(l => l.ToString("F4")))}; {result.Steps.Count} steps, {result.TokensPerSecond:F0} tokens/s");

        result.Steps.Should().HaveCount(32); // 14 blocks → 4 micro-batches of 4 → 2 steps per epoch
        result.EpochLosses[0].Should().BeGreaterThan(4.0);
        result.EpochLosses[^1].Should().BeLessThan(0.1).And.BeLessThan(0.05 * result.EpochLosses[0]);
        Changed(before, Snapshot(model)).Should().Equal(before.Keys, "every parameter is trained (decay moves even unused embedding rows)");
        model.training.Should().BeFalse("the previous (eval) mode is restored");
        model.GradientCheckpointing.Should().BeFalse();
        model.parameters().Should().OnlyContain(p => p.requires_grad, "every parameter required grad before and does again");
        GradientCount(model).Should().Be(0, "the gradients are released after the run");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]  // a reference that decays the norm weights too must not match
    [InlineData(false, true)]  // nor one that does not clip
    public void TwoAdamWStepsEqualTheUpdateFormulaWrittenOut(bool decayNorms, bool noClipping)
    {
        // 4 blocks, batch 2 × accumulation 2, no shuffle, 2 epochs: two optimizer steps on the same two micro-batches, at the
        // linear schedule's rates lr·2/2 and lr·1/2. eps 1e-3 is of the order of the clipped gradients' elements, so the
        // update lr·m̂/(√v̂ + eps) depends on the clipping coefficient (with eps 1e-8 it would be ≈ lr·sign(g)).
        const double lr = 1e-2, wd = 0.1, eps = 1e-3, maxNorm = 0.05, beta1 = 0.9, beta2 = 0.999;
        var data = TrainingFixture.RandomBlocks(4);
        var options = new TrainingOptions
        {
            Epochs = 2, PerDeviceBatchSize = 2, GradientAccumulationSteps = 2, Shuffle = false, LearningRate = lr,
            Schedule = LearningRateSchedule.Linear, WeightDecay = wd, AdamEpsilon = eps, MaxGradNorm = maxNorm,
        };
        using var trained = TinyModels.RandomModel(seed: 1);
        var result = new CausalLMTrainer().Train(trained, TrainableSelection.All, data, options);
        result.Steps.Select(s => s.LearningRate).Should().Equal(lr, lr / 2);
        var actual = Snapshot(trained);

        // The reference: the same forward/backward (each micro-batch's mean loss weighted by its half of the step's
        // target tokens), clipping and AdamW written out in double precision. Decay on every weight but the RMSNorm ones.
        using var reference = TinyModels.RandomModel(seed: 1);
        reference.train();
        var named = reference.named_parameters().ToList();
        bool[] decays = [.. named.Select(p => decayNorms || !p.name.EndsWith("norm.weight", StringComparison.Ordinal))];
        double[][] w = [.. named.Select(p => ToDoubles(p.parameter))];
        double[][] m = [.. w.Select(x => new double[x.Length])];
        double[][] v = [.. w.Select(x => new double[x.Length])];
        var norms = new List<double>();
        for (int t = 1; t <= 2; t++)
        {
            foreach (var (_, p) in named)
            {
                p.grad = null;
            }

            foreach (int[] microBatch in new[] { new[] { 0, 1 }, [2, 3] })
            {
                using var scope = NewDisposeScope();
                Tensor ids = tensor(microBatch.SelectMany(b => data.Blocks[b]).Select(x => (long)x).ToArray(), [2, 12]);
                using var o = reference.forward(new CausalLMInput(ids) { Labels = ids });
                (o.Loss! * 0.5).backward();
            }

            double[][] g = [.. named.Select(p => { using var grad = p.parameter.grad!; return ToDoubles(grad); })];
            double norm = Math.Sqrt(g.Sum(x => x.Sum(e => e * e)));
            norms.Add(norm);
            double coefficient = noClipping ? 1 : Math.Min(1, maxNorm / (norm + 1e-6)); // clip_grad_norm_
            double rate = lr * (2 - (t - 1)) / 2.0; // linear decay over 2 steps, no warm-up
            double correction1 = 1 - Math.Pow(beta1, t), correction2 = 1 - Math.Pow(beta2, t);
            for (int i = 0; i < w.Length; i++)
            {
                for (int j = 0; j < w[i].Length; j++)
                {
                    double gij = g[i][j] * coefficient;
                    m[i][j] = (beta1 * m[i][j]) + ((1 - beta1) * gij);
                    v[i][j] = (beta2 * v[i][j]) + ((1 - beta2) * gij * gij);
                    double decayed = decays[i] ? w[i][j] * (1 - (rate * wd)) : w[i][j];
                    w[i][j] = decayed - (rate * (m[i][j] / correction1) / (Math.Sqrt(v[i][j] / correction2) + eps));
                }

                using var guard = no_grad();
                using var values = tensor(w[i].Select(x => (float)x).ToArray(), named[i].parameter.shape);
                named[i].parameter.copy_(values);
            }
        }

        double worst = 0, moved = 0, worstNorm = 0;
        for (int i = 0; i < named.Count; i++)
        {
            float[] a = actual[named[i].name];
            for (int j = 0; j < a.Length; j++)
            {
                double diff = Math.Abs(a[j] - w[i][j]);
                worst = Math.Max(worst, diff);
                if (!decays[i] || named[i].name.EndsWith("norm.weight", StringComparison.Ordinal))
                {
                    worstNorm = Math.Max(worstNorm, diff);
                }
            }
        }

        using (var initial = TinyModels.RandomModel(seed: 1))
        {
            var start = Snapshot(initial);
            moved = actual.Max(kv => kv.Value.Zip(start[kv.Key], (x, y) => Math.Abs((double)x - y)).Max());
        }

        output.WriteLine($"decay norms {decayNorms}, no clipping {noClipping}: grad norms {result.Steps[0].GradNorm:R}, {result.Steps[1].GradNorm:R} " +
            $"(reference {norms[0]:R}, {norms[1]:R}); max |trainer − reference| {worst:E2} (norm weights {worstNorm:E2}); largest move {moved:E2}");
        if (decayNorms || noClipping)
        {
            worst.Should().BeGreaterThan(1e-4, "the trainer neither decays norm weights nor skips clipping");
            return;
        }

        norms.Should().OnlyContain(n => n > 10 * maxNorm, "clipping is exercised at both steps");
        result.Steps.Select(s => s.GradNorm).Should().Equal(norms, (a, b) => Math.Abs(a - b) <= 1e-5 * b);
        worst.Should().BeLessThanOrEqualTo(3e-7, "float32 weights near 1 (the norms) are 6e-8 apart: a few float32 roundings");
        moved.Should().BeGreaterThan(1e-3);
    }

    [Fact]
    public void OnlyTheSelectedSubsetIsTrainedAndRequiresGradIsRestored()
    {
        using var model = TinyModels.RandomModel(seed: 1);
        var named = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        named["model.embed_tokens.weight"].requires_grad = false; // frozen by the caller, selected below: trained, then frozen again
        named["model.layers.0.mlp.up_proj.weight"].requires_grad = false; // frozen by the caller, not selected
        var flags = named.ToDictionary(kv => kv.Key, kv => kv.Value.requires_grad);
        var selection = TrainableSelection.Matching(@"model\.layers\.1\.self_attn\..*", @".*norm\.weight", @"model\.embed_tokens\.weight");
        string[] expected =
        [
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
            "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
            "model.layers.1.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
            "model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
            "model.norm.weight",
        ];

        var duringRun = new List<string[]>();
        var progress = new ListProgress(_ => duringRun.Add([.. named.Where(kv => kv.Value.requires_grad).Select(kv => kv.Key)]));
        var before = Snapshot(model);
        var options = new TrainingOptions { Epochs = 2, LearningRate = 1e-2, WeightDecay = 0.1, LogEverySteps = 1 };
        var result = new CausalLMTrainer().Train(model, selection, TrainingFixture.RandomBlocks(8), options, progress);

        result.Steps.Should().HaveCount(2);
        Changed(before, Snapshot(model)).Should().BeEquivalentTo(expected, "the selected parameters move and every other one stays bit-identical");
        duringRun.Should().HaveCount(2).And.OnlyContain(names => names.Order().SequenceEqual(expected.Order()), "only the selection requires grad during the run");
        named.ToDictionary(kv => kv.Key, kv => kv.Value.requires_grad).Should().Equal(flags, "each parameter's requires_grad is restored");
        GradientCount(model).Should().Be(0);

        // A predicate selects too.
        var head = TrainableSelection.Where(name => name == "lm_head.weight", "the output head");
        head.ToString().Should().Be("the output head");
        before = Snapshot(model);
        new CausalLMTrainer().Train(model, head, TrainingFixture.RandomBlocks(4), options);
        Changed(before, Snapshot(model)).Should().Equal("lm_head.weight");
    }

    [Fact]
    public void WeightDecayGoesToEveryWeightButTheNormsAsHuggingFacesTrainerDoes()
    {
        using var model = TinyModels.RandomModel(seed: 1);
        var names = model.named_parameters().Select(p => p.name).ToList();
        string[] norms = [.. names.Where(n => n.Contains("layernorm", StringComparison.Ordinal) || n == "model.norm.weight")];
        norms.Should().HaveCount(5);
        CausalLMTrainer.DecayParameterNames(model).Should().Equal(names.Except(norms));
    }

    [Fact]
    public void FourBitLayersAreRejectedForFullTrainingButASubsetOfTheRestTrains()
    {
        using var model = TinyModels.RandomModel(seed: 1);
        const string q = "model.layers.0.self_attn.q_proj";
        using (var dense = ModuleTree.Replace(model, q, Linear4bit.FromLinear((nn.Module<Tensor, Tensor>)ModuleTree.Get(model, q), new Nf4Options { ComputeDtype = ScalarType.Float32 })))
        {
        }

        var data = TrainingFixture.RandomBlocks(4);
        var trainer = new CausalLMTrainer();
        FluentActions.Invoking(() => trainer.Train(model, TrainableSelection.All, data, new TrainingOptions()))
            .Should().Throw<ArgumentException>()
            .WithMessage($"Full-parameter training needs a 16- or 32-bit model, but the layer '{q}' is 4-bit Linear4bit*LoraTrainer*")
            .Which.ParamName.Should().Be("selection");
        FluentActions.Invoking(() => trainer.Train(model, TrainableSelection.Matching(@"model\.layers\.0\.self_attn\.q_proj\.weight"), data, new TrainingOptions()))
            .Should().Throw<ArgumentException>().WithMessage("*selects none of the model's 20 parameters (1 Linear4bit layers hold their 4-bit weights as buffers, not parameters)*");

        // The norms of the 4-bit model train (gradients flow through the 4-bit layer); its packed weight stays as it was.
        var before = Snapshot(model);
        using var packed = ((Linear4bit)ModuleTree.Get(model, q)).QuantizedWeight();
        byte[] bytes = packed.Packed.data<byte>().ToArray();
        new CausalLMTrainer().Train(model, TrainableSelection.Matching(".*norm\\.weight"), data, new TrainingOptions { LearningRate = 1e-2 });
        Changed(before, Snapshot(model)).Should().HaveCount(5).And.OnlyContain(n => n.EndsWith("norm.weight", StringComparison.Ordinal));
        using var after = ((Linear4bit)ModuleTree.Get(model, q)).QuantizedWeight();
        after.Packed.data<byte>().ToArray().Should().Equal(bytes);

        FluentActions.Invoking(() => trainer.Train(model, TrainableSelection.Matching(".*norm\\.weight"), data, new TrainingOptions { CheckpointFolder = "out" }))
            .Should().Throw<ArgumentException>().WithMessage("TrainingOptions.CheckpointFolder is set, but CausalLMTrainer checkpoints are plain Mistral checkpoints*Linear4bit*");
    }

    [Fact]
    public void CheckpointsAreWholeModelsThatLoadBackAndLeaveNoTemporaryFolder()
    {
        // 5 blocks, batch 1 × accumulation 1: 5 steps; SaveEverySteps 2 saves after steps 2, 4 and the last one (5).
        string root = TestPaths.TempDir();
        try
        {
            using var model = TinyModels.RandomModel(seed: 1);
            var snapshots = new Dictionary<int, Dictionary<string, float[]>>();
            var progress = new ListProgress(p => snapshots[p.Step] = Snapshot(model));
            var options = new TrainingOptions
            {
                PerDeviceBatchSize = 1, GradientAccumulationSteps = 1, LearningRate = 1e-2, ReportEverySteps = 1, CheckpointFolder = root, SaveEverySteps = 2,
            };
            var result = new CausalLMTrainer().Train(model, TrainableSelection.All, TrainingFixture.RandomBlocks(5), options, progress);

            result.Checkpoints.Should().Equal(Path.Combine(root, "checkpoint-2"), Path.Combine(root, "checkpoint-4"), Path.Combine(root, "checkpoint-5"));
            Directory.GetFileSystemEntries(root).Select(Path.GetFileName).Order().Should().Equal("checkpoint-2", "checkpoint-4", "checkpoint-5");
            foreach (var (folder, step) in result.Checkpoints.Zip(new[] { 2, 4, 5 }))
            {
                Directory.GetFiles(folder).Select(Path.GetFileName).Order().Should().Equal("config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json");
                MistralConfig.FromFile(Path.Combine(folder, "config.json")).Should().Be(model.Config with { TorchDtype = "float32" });
                using var loaded = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(folder, "config.json")));
                CheckpointLoader.Load(loaded, folder);
                Changed(snapshots[step], Snapshot(loaded)).Should().BeEmpty($"checkpoint-{step} holds the weights after step {step}");
            }

            // By default a checkpoint per epoch.
            string perEpoch = Path.Combine(root, "per-epoch");
            var epochs = new CausalLMTrainer().Train(model, TrainableSelection.All, TrainingFixture.RandomBlocks(4),
                options with { Epochs = 2, SaveEverySteps = null, CheckpointFolder = perEpoch, PerDeviceBatchSize = 2 });
            epochs.Checkpoints.Select(Path.GetFileName).Should().Equal("checkpoint-2", "checkpoint-4");
            Directory.GetFileSystemEntries(perEpoch).Should().HaveCount(2, "nothing but the checkpoints (no staging folder) is left");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void CancellationRestoresTheModelsFlagsAndKeepsTheStepsTaken()
    {
        using var model = TinyModels.RandomModel(seed: 1);
        using var cts = new CancellationTokenSource();
        var progress = new ListProgress(_ => cts.Cancel());
        var before = Snapshot(model);
        var options = new TrainingOptions { Epochs = 2, PerDeviceBatchSize = 2, GradientAccumulationSteps = 1, LogEverySteps = 1 };
        var e = FluentActions.Invoking(() => new CausalLMTrainer().Train(model, TrainableSelection.Matching("lm_head\\.weight"), TrainingFixture.RandomBlocks(8), options, progress, cts.Token))
            .Should().Throw<TrainingCanceledException>().Which;
        e.StepsCompleted.Should().Be(1);
        e.PartialResult.Steps.Should().ContainSingle();
        Changed(before, Snapshot(model)).Should().Equal("lm_head.weight");
        model.parameters().Should().OnlyContain(p => p.requires_grad);
        GradientCount(model).Should().Be(0);
        model.training.Should().BeFalse();
    }

    [Fact]
    public void BadArgumentsAreRejectedByName()
    {
        using var model = TinyModels.RandomModel(seed: 1);
        var data = TrainingFixture.RandomBlocks(2);
        var trainer = new CausalLMTrainer();
        FluentActions.Invoking(() => trainer.Train(model, TrainableSelection.Matching("nothing"), data, new TrainingOptions()))
            .Should().Throw<ArgumentException>()
            .WithMessage("The selection (parameters matching 'nothing') selects none of the model's 21 parameters; their names look like 'model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.k_proj.weight', …. *");
        FluentActions.Invoking(() => TrainableSelection.Matching("(")).Should().Throw<ArgumentException>().WithMessage("patterns: '(' is not a valid regular expression*");
        FluentActions.Invoking(() => TrainableSelection.Matching()).Should().Throw<ArgumentException>();
        FluentActions.Invoking(() => trainer.Train(model, TrainableSelection.All, new PackedDataset([], 4), new TrainingOptions()))
            .Should().Throw<ArgumentException>().WithMessage("*no blocks*");
        FluentActions.Invoking(() => trainer.Train(model, TrainableSelection.All, data, new TrainingOptions { Epochs = 0 }))
            .Should().Throw<ArgumentException>().WithMessage("TrainingOptions.Epochs must be at least 1; got 0.*");
        FluentActions.Invoking(() => trainer.Train(model, TrainableSelection.All, data, new TrainingOptions { SaveEverySteps = 5 }))
            .Should().Throw<ArgumentException>().WithMessage("TrainingOptions.SaveEverySteps needs CheckpointFolder*").Which.ParamName.Should().Be("SaveEverySteps");
        FluentActions.Invoking(() => trainer.Train(model, TrainableSelection.All, data, new TrainingOptions { WarmupSteps = -1 }))
            .Should().Throw<ArgumentException>().WithMessage("TrainingOptions.WarmupSteps must be non-negative*");
        model.parameters().Should().OnlyContain(p => p.requires_grad, "a rejected call changes nothing");
    }

    /// <summary>How many parameters hold a gradient.</summary>
    internal static int GradientCount(MistralForCausalLM model)
    {
        using var scope = NewDisposeScope(); // each read of .grad makes a handle
        return model.parameters().Count(p => p.grad is not null);
    }

    private static double[] ToDoubles(Tensor t) => [.. t.detach().cpu().data<float>().ToArray().Select(x => (double)x)];
}
