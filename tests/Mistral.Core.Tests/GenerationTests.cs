using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

public class GenerationTests
{
    [Theory]
    [InlineData(6)]
    [InlineData(null)]
    public void CachedLogitsEqualFullForwardAtEveryStepAcrossTheWindow(int? window)
    {
        MistralConfig config = TinyModels.Tiny(window);
        using var model = TinyModels.RandomModel(config, seed: 11);
        long[] sequence = Enumerable.Range(0, 23).Select(i => (long)((i * 37 % 90) + 3)).ToArray();
        using var full = tensor(sequence, [1, sequence.Length]);
        using var reference = model.forward(new CausalLMInput(full));

        // Prefill 4 tokens, then one token at a time: the sequence passes W = 6 several times (rolling buffer).
        using var cache = new KvCache(config, 1, sequence.Length, ScalarType.Float32, CPU);
        cache.IsRolling.Should().Be(window is not null);
        using (var first = model.forward(new CausalLMInput(full.narrow(1, 0, 4)) { Cache = cache }))
        {
            TensorChecks.MaxAbsDiff(first.Logits, reference.Logits.narrow(1, 0, 4)).Should().BeLessThan(1e-5f);
        }

        for (int t = 4; t < sequence.Length; t++)
        {
            using var step = model.forward(new CausalLMInput(full.narrow(1, t, 1)) { Cache = cache });
            TensorChecks.MaxAbsDiff(step.Logits, reference.Logits.narrow(1, t, 1)).Should().BeLessThan(1e-5f, $"step {t}");
        }
    }

    [Fact]
    public void ChunkedPrefillLongerThanTheWindowEqualsFullForward()
    {
        MistralConfig config = TinyModels.Tiny(window: 5);
        using var model = TinyModels.RandomModel(config, seed: 12);
        using var ids = tensor(Enumerable.Range(0, 19).Select(i => (long)((i * 13 % 90) + 3)).ToArray(), [1, 19]);
        using var reference = model.forward(new CausalLMInput(ids));
        using var cache = new KvCache(config, 1, 25, ScalarType.Float32, CPU);
        // Chunks of 7 and 5 (> W, = W) and a remainder: the rolling path that attends over old slots plus the new chunk.
        int[] chunks = [7, 5, 4, 3];
        int start = 0;
        foreach (int n in chunks)
        {
            using var output = model.forward(new CausalLMInput(ids.narrow(1, start, n)) { Cache = cache });
            TensorChecks.MaxAbsDiff(output.Logits, reference.Logits.narrow(1, start, n)).Should().BeLessThan(1e-5f, $"chunk at {start}");
            start += n;
        }
    }

    [Fact]
    public void BatchedLeftPaddedGenerationEqualsOneByOne()
    {
        MistralConfig config = TinyModels.Tiny(window: 6);
        using var model = TinyModels.RandomModel(config, seed: 13);
        var generator = new TokenGenerator(model);
        int[][] prompts = [[5, 9, 14, 20, 33, 41, 7, 8, 9], [17, 3], [60, 61, 62, 63, 64]];
        var options = GenerationOptions.Greedy with { MaxNewTokens = 15, PadTokenId = 0 };
        GenerationResult batched = generator.Generate(prompts, options);
        for (int i = 0; i < prompts.Length; i++)
        {
            GenerationResult single = generator.Generate([prompts[i]], options);
            batched.Sequences[i].TokenIds.Should().Equal(single.Sequences[0].TokenIds, $"prompt {i}");
            batched.Sequences[i].FinishReason.Should().Be(FinishReason.Length);
        }

        batched.Timing.GeneratedTokens.Should().Be(45);
        batched.Timing.DecodeSteps.Should().Be(14);
        batched.Timing.DecodeTokens.Should().Be(42, "the first token of each row comes from the prefill");
        batched.Timing.StepMilliseconds.Should().HaveCount(14).And.OnlyContain(ms => ms > 0);
    }

    [Fact]
    public void GreedyGenerationEqualsArgmaxOfFullForward()
    {
        MistralConfig config = TinyModels.Tiny(window: 4);
        using var model = TinyModels.RandomModel(config, seed: 14);
        var result = new TokenGenerator(model).Generate([[3, 4, 5]], GenerationOptions.Greedy with { MaxNewTokens = 12 });
        var sequence = new List<long> { 3, 4, 5 };
        for (int i = 0; i < 12; i++)
        {
            using var ids = tensor(sequence.ToArray(), [1, sequence.Count]);
            using var output = model.forward(new CausalLMInput(ids));
            sequence.Add(output.Logits[0, -1].argmax().item<long>());
        }

        result.Sequences[0].TokenIds.Select(x => (long)x).Should().Equal(sequence.Skip(3));
    }

    [Fact]
    public void EosStopsARowAndSeededSamplingIsReproducible()
    {
        MistralConfig config = TinyModels.Tiny(window: 6);
        using var model = TinyModels.RandomModel(config, seed: 15);
        var generator = new TokenGenerator(model);
        var sampling = new GenerationOptions { MaxNewTokens = 10, DoSample = true, Temperature = 0.8, TopK = 20, TopP = 0.9, Seed = 42 };
        var a = generator.Generate([[3, 4, 5]], sampling);
        var b = generator.Generate([[3, 4, 5]], sampling);
        a.Sequences[0].TokenIds.Should().Equal(b.Sequences[0].TokenIds);
        // And sampling really samples: a hot distribution with another seed, and greedy, give other sequences.
        var hot = sampling with { Temperature = 3.0, TopK = 0, TopP = 1.0 };
        var h1 = generator.Generate([[3, 4, 5]], hot with { Seed = 1 }).Sequences[0].TokenIds;
        var h2 = generator.Generate([[3, 4, 5]], hot with { Seed = 2 }).Sequences[0].TokenIds;
        var greedy = generator.Generate([[3, 4, 5]], GenerationOptions.Greedy with { MaxNewTokens = 10 }).Sequences[0].TokenIds;
        h1.Should().NotEqual(h2);
        h1.Should().NotEqual(greedy);

        int firstGreedy = generator.Generate([[3, 4, 5]], GenerationOptions.Greedy with { MaxNewTokens = 1 }).Sequences[0].TokenIds[0];
        var stopped = generator.Generate([[3, 4, 5]], GenerationOptions.Greedy with { MaxNewTokens = 10, EosTokenIds = [firstGreedy] });
        stopped.Sequences[0].TokenIds.Should().Equal(firstGreedy);
        stopped.Sequences[0].FinishReason.Should().Be(FinishReason.EndOfSequence);
    }

    [Fact]
    public void SamplingFromNaNLogitsIsAClearError()
    {
        using var model = TinyModels.RandomModel(TinyModels.Tiny(window: 6), seed: 16);
        using (no_grad())
        {
            model.parameters().First().fill_(float.NaN);
        }

        Action act = () => new TokenGenerator(model).Generate([[3, 4]], new GenerationOptions { DoSample = true, MaxNewTokens = 2, Seed = 1 });
        act.Should().Throw<InvalidOperationException>().WithMessage("*NaN logits*");
        Action greedy = () => new TokenGenerator(model).Generate([[3, 4], [5]], GenerationOptions.Greedy with { MaxNewTokens = 2 });
        greedy.Should().Throw<InvalidOperationException>().WithMessage("Generation step 0: *NaN logits*");
    }

    [Fact]
    public void ZeroNewTokensRunsThePrefillAndChoosesNothing()
    {
        // Even from NaN logits: no token is chosen, so there is nothing to fail on.
        using var model = TinyModels.RandomModel(TinyModels.Tiny(window: 6), seed: 16);
        using (no_grad())
        {
            model.parameters().First().fill_(float.NaN);
        }

        var result = new TokenGenerator(model).Generate([[3, 4], [5]], GenerationOptions.Greedy with { MaxNewTokens = 0 });
        result.Sequences.Should().OnlyContain(s => s.TokenIds.Count == 0 && s.FinishReason == FinishReason.Length);
        result.Timing.DecodeSteps.Should().Be(0);
        result.Timing.PrefillMilliseconds.Should().BePositive();
    }

    [Fact]
    public void TopPKeepsTheSmallestNucleusLikeHuggingFace()
    {
        // probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.7 keeps {0.5, 0.3}; top_p 0.95 keeps three.
        using var logits = tensor(new float[] { MathF.Log(0.15f), MathF.Log(0.5f), MathF.Log(0.05f), MathF.Log(0.3f) }, [1, 4]);
        using var kept = LogitsProcessing.TopP(logits, 0.7);
        kept.isinf().data<bool>().ToArray().Should().Equal(true, false, true, false);
        using var kept95 = LogitsProcessing.TopP(logits, 0.95);
        kept95.isinf().data<bool>().ToArray().Should().Equal(false, false, true, false);
        using var topk = LogitsProcessing.TopK(logits, 1);
        topk.isinf().data<bool>().ToArray().Should().Equal(true, false, true, true);
        using var seen = tensor(new long[] { 1, 2 }, [1, 2]);
        using var penalised = LogitsProcessing.RepetitionPenalty(tensor(new float[] { 1f, 2f, -2f, 4f }, [1, 4]), seen, 2.0);
        penalised.data<float>().ToArray().Should().Equal(1f, 1f, -4f, 4f);
    }

    [Fact]
    public void BadOptionsNameTheOption()
    {
        Action act = () => (GenerationOptions.Greedy with { TopP = 0 }).Validate();
        act.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("TopP");
        GenerationOptions.StudyClassification.MaxNewTokens.Should().Be(20);
        GenerationOptions.StudySummarizationFineTuned.TopP.Should().Be(0.9);
        GenerationOptions.Preset("Study-Classification").Should().BeSameAs(GenerationOptions.StudyClassification);
        GenerationOptions.StudyClassification.TopK.Should().Be(50, "HF's GenerationConfig default the study did not override");
        Action unknown = () => GenerationOptions.Preset("creative");
        unknown.Should().Throw<ArgumentException>().WithMessage("*'creative'*study-classification*");
    }
}
