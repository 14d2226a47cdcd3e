using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

public class ConcurrencyTests
{
    [Fact]
    public void OneModelServesForwardsAndGenerationsFromSeveralThreads()
    {
        using var model = TinyModels.RandomModel(TinyModels.Tiny(window: 6), seed: 31);
        long[][] inputs = Enumerable.Range(0, 4).Select(k => Enumerable.Range(0, 9 + k).Select(i => (long)(((i * 7) + k) % 90 + 3)).ToArray()).ToArray();
        float[][] expected = inputs.Select(ids =>
        {
            using var t = tensor(ids, [1, ids.Length]);
            using var o = model.forward(new CausalLMInput(t));
            return o.Logits.data<float>().ToArray();
        }).ToArray();
        var generator = new TokenGenerator(model);
        var expectedTokens = inputs.Select(ids => generator.Generate([ids.Select(x => (int)x).ToArray()], GenerationOptions.Greedy with { MaxNewTokens = 8 }).Sequences[0].TokenIds.ToArray()).ToArray();

        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            int k = i % inputs.Length;
            using var scope = NewDisposeScope();
            Tensor ids = tensor(inputs[k], [1, inputs[k].Length]);
            var output = model.forward(new CausalLMInput(ids));
            if (!output.Logits.data<float>().ToArray().SequenceEqual(expected[k]))
            {
                failures.Add($"forward {i}");
            }

            var tokens = generator.Generate([inputs[k].Select(x => (int)x).ToArray()], GenerationOptions.Greedy with { MaxNewTokens = 8 }).Sequences[0].TokenIds;
            if (!tokens.SequenceEqual(expectedTokens[k]))
            {
                failures.Add($"generate {i}");
            }
        });
        failures.Should().BeEmpty();
    }
}
