using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests.Reliability;

/// <summary>Issue 11 §2/§3: NaN logits, overflowing temperatures, huge MaxNewTokens and oversized configs fail clearly.</summary>
public class GenerationGuardTests
{
    private static readonly IReadOnlyList<IReadOnlyList<int>> Prompt = [new[] { 1, 5, 9 }];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NaNLogitsThrowNamingTheStep(bool sample)
    {
        using var model = TinyModels.RandomModel();
        using (no_grad())
        {
            ((Linear)model.LmHead).Weight.fill_(float.NaN);
        }

        var options = new GenerationOptions { MaxNewTokens = 5, DoSample = sample, Seed = 1 };
        FluentActions.Invoking(() => new TokenGenerator(model).Generate(Prompt, options))
            .Should().Throw<InvalidOperationException>().WithMessage("Generation step 0: *NaN logits*weights loaded*");
    }

    [Fact]
    public void TemperatureWhoseReciprocalOverflowsFloat32IsRejectedWhenSampling()
    {
        var options = new GenerationOptions { DoSample = true, Temperature = 1e-50 };
        FluentActions.Invoking(options.Validate).Should().Throw<ArgumentOutOfRangeException>()
            .WithMessage("*Temperature 1E-50 is too small*overflows float32*DoSample = false*").Which.ParamName.Should().Be("Temperature");

        // Greedy decoding ignores the temperature, as HF does.
        using var model = TinyModels.RandomModel();
        new TokenGenerator(model).Generate(Prompt, new GenerationOptions { Temperature = 1e-50, MaxNewTokens = 2 })
            .Sequences[0].TokenIds.Should().HaveCount(2);
    }

    [Fact]
    public void TemperatureThatOverflowsThisModelsLogitsThrowsInsteadOfReportingNaN()
    {
        using var model = TinyModels.RandomModel();
        using (no_grad())
        {
            ((Linear)model.LmHead).Weight.mul_(1000);
        }

        var options = new GenerationOptions { DoSample = true, Temperature = 1e-37, MaxNewTokens = 3, Seed = 1 };
        FluentActions.Invoking(() => new TokenGenerator(model).Generate(Prompt, options))
            .Should().Throw<InvalidOperationException>().WithMessage("Generation step 0: logits / Temperature (1E-37) overflow float32*");
    }

    [Fact]
    public void MaxNewTokensIntMaxValueIsRejectedByName()
    {
        var options = new GenerationOptions { MaxNewTokens = int.MaxValue };
        FluentActions.Invoking(options.Validate).Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("MaxNewTokens");
        using var model = TinyModels.RandomModel();
        FluentActions.Invoking(() => new TokenGenerator(model).Generate(Prompt, options))
            .Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("MaxNewTokens");
    }

    [Fact]
    public void HugeMaxNewTokensDoesNotAllocateTheCacheUpFront()
    {
        // 4 kv heads × 64 dims × 2 layers × K,V × float32 = 4 KiB per token: 50,000,000 tokens would be 200 GB up front.
        var config = TinyModels.Tiny(window: null) with { NumKeyValueHeads = 4, HeadDim = 64 };
        using var model = TinyModels.RandomModel(config);
        var generator = new TokenGenerator(model);
        int calls = 0;
        var stopped = generator.Generate(Prompt, new GenerationOptions { MaxNewTokens = 50_000_000 }, (_, _) => ++calls >= 4);
        var reference = generator.Generate(Prompt, new GenerationOptions { MaxNewTokens = 4 });
        stopped.Sequences[0].TokenIds.Should().Equal(reference.Sequences[0].TokenIds);
    }

    [Fact]
    public void AGrowingCacheGivesTheTokensOfAFullForward()
    {
        // 600 new tokens without a window: the cache starts at prompt + 256 slots and grows twice.
        var config = TinyModels.Tiny(window: null) with { MaxPositionEmbeddings = 1024 };
        using var model = TinyModels.RandomModel(config, seed: 5);
        var result = new TokenGenerator(model).Generate(Prompt, new GenerationOptions { MaxNewTokens = 600 });
        int[] generated = [.. result.Sequences[0].TokenIds];
        generated.Should().HaveCount(600);
        long[] all = [.. Prompt[0].Select(x => (long)x), .. generated.Select(x => (long)x)];
        using Tensor ids = tensor(all, [1, all.Length]);
        using Tensor logits = TinyModels.Logits(model, ids);
        for (int i = 0; i < generated.Length; i++)
        {
            using Tensor row = logits[0, Prompt[0].Count - 1 + i];
            float max = row.max().item<float>();
            row[generated[i]].item<float>().Should().BeApproximately(max, 1e-4f, $"token {i} is the arg-max of the full forward");
        }
    }

    [Fact]
    public void ConfigSizesAreBoundedBeforeAnythingIsAllocated()
    {
        var layers = TinyModels.Tiny() with { NumHiddenLayers = 2_000_000_000 };
        FluentActions.Invoking(() => new MistralForCausalLM(layers)).Should().Throw<InvalidDataException>()
            .WithMessage("*'num_hidden_layers' (2000000000) is larger than any checkpoint holds*");

        var wide = TinyModels.Tiny() with { VocabSize = 16_000_000, HiddenSize = 16_000_000 };
        FluentActions.Invoking(() => wide.Validate("x/config.json")).Should().Throw<InvalidDataException>()
            .WithMessage("x/config.json: the configuration describes * parameters*'vocab_size'*");

        var deep = TinyModels.Tiny() with { NumHiddenLayers = 16000, HiddenSize = 4096, IntermediateSize = 1_000_000 };
        FluentActions.Invoking(() => deep.Validate()).Should().Throw<InvalidDataException>().WithMessage("*'num_hidden_layers' (16000)*");

        MistralConfig.Mistral7B.ParameterCount.Should().Be(7_241_732_096);
    }
}
