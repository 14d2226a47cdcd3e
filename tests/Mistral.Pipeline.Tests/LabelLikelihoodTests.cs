using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using Mistral.Core.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Pipeline.Tests;

/// <summary>Label likelihood with a shared prompt cache equals scoring each "prompt + label" text from scratch.</summary>
public sealed class LabelLikelihoodTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Theory]
    [InlineData("### Sentence:the band played ### Class:", false)]
    [InlineData("### Sentence:the band played ### Class:", true)]
    [InlineData("Classify this: ", false)] // a trailing space the labels' first piece may absorb
    public void CachedScoresEqualFullForwardScores(string prompt, bool eos)
    {
        using var model = new MistralForCausalLM(fixture.Config, ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, fixture.Folder);
        model.eval();
        var tokenizer = MistralTokenizer.FromFolder(fixture.Folder);
        string[] labels = ["sport", "food", "music", "rec.sport.hockey", " spaced"];
        double[] cached = new LabelLikelihoodScorer(model, tokenizer).Score(prompt, labels, eos, CancellationToken.None);

        int[] promptIds = tokenizer.Encode(prompt);
        var full = labels.Select(l => eos ? [.. tokenizer.Encode(prompt + l), tokenizer.EosId] : tokenizer.Encode(prompt + l)).ToArray();
        int shared = full.Min(f => Math.Min(Common(promptIds, f), f.Length - 1));
        for (int i = 0; i < labels.Length; i++)
        {
            double reference = FullScore(model, full[i], shared);
            cached[i].Should().BeApproximately(reference, 1e-4, labels[i]);
        }

        cached.Distinct().Should().HaveCount(labels.Length, "different labels get different scores");
        double[] oneRowAtATime = new LabelLikelihoodScorer(model, tokenizer, maxCacheCopyBytes: 1).Score(prompt, labels, eos, CancellationToken.None);
        oneRowAtATime.Zip(cached).Should().OnlyContain(p => Math.Abs(p.First - p.Second) < 1e-4, "batching the labels changes nothing");
    }

    [Fact]
    public void KvCacheTruncateForgetsTheTail()
    {
        using var model = new MistralForCausalLM(fixture.Config, ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, fixture.Folder);
        model.eval();
        using var noGrad = inference_mode();
        using var cache = new KvCache(model.Config, 1, 16, ScalarType.Float32, CPU, allowRolling: false);
        using var a = tensor(new long[] { 1, 5, 6, 7 }, [1, 4]);
        using var b = tensor(new long[] { 9, 10 }, [1, 2]);
        using var c = tensor(new long[] { 11, 12 }, [1, 2]);
        model.forward(new CausalLMInput(a) { Cache = cache }).Dispose();
        model.forward(new CausalLMInput(b) { Cache = cache }).Dispose();
        cache.Truncate(4);
        cache.Length.Should().Be(4);
        using var afterTruncate = model.forward(new CausalLMInput(c) { Cache = cache });
        using var fresh = model.forward(new CausalLMInput(tensor(new long[] { 1, 5, 6, 7, 11, 12 }, [1, 6])));
        TensorChecks.MaxAbsDiff(afterTruncate.Logits, fresh.Logits.narrow(1, 4, 2)).Should().BeLessThan(1e-5f);

        using var rolling = new KvCache(model.Config with { SlidingWindow = 4 }, 1, 16, ScalarType.Float32, CPU);
        var act = () => rolling.Truncate(0);
        act.Should().Throw<InvalidOperationException>().WithMessage("*rolling KV cache*cannot be truncated*");
        var tooLong = () => cache.Truncate(99);
        tooLong.Should().Throw<ArgumentOutOfRangeException>();
    }

    private static double FullScore(MistralForCausalLM model, int[] ids, int shared)
    {
        using var noGrad = inference_mode();
        using var scope = NewDisposeScope();
        var input = tensor(ids.Select(x => (long)x).ToArray(), [1, ids.Length]);
        using var output = model.forward(new CausalLMInput(input));
        var logProbs = output.Logits[0].to_type(ScalarType.Float64).log_softmax(-1);
        double total = 0;
        for (int j = shared; j < ids.Length; j++)
        {
            total += logProbs[j - 1, ids[j]].item<double>();
        }

        return total;
    }

    private static int Common(int[] a, int[] b)
    {
        int i = 0;
        while (i < a.Length && i < b.Length && a[i] == b[i])
        {
            i++;
        }

        return i;
    }
}

/// <summary>NaN never flows silently into a label-likelihood prediction.</summary>
public sealed class LabelLikelihoodNaNTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Fact]
    public void NonFiniteLabelScoresFailNamingTheExampleAndLabel()
    {
        using var pipeline = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu")
            .ForTask(new ClassificationTask { GenerateAndParse = false }).Build();
        using (no_grad())
        {
            ((TorchSharp.Modules.Parameter)pipeline.Model.LmHead.parameters().First()).fill_(float.NaN);
        }

        var act = () => pipeline.Evaluate(PipelineFixture.Examples(3, seed: 1), EvaluationMode.ZeroShot());
        act.Should().Throw<InvalidOperationException>().WithMessage("examples[0]: the log-likelihood of label 'sport' is NaN*");
    }
}
