using static TorchSharp.torch;

namespace Mistral.Pipeline.Tests;

/// <summary>Runs alone: other tests may draw from TorchSharp's default generator (unseeded sampling) in parallel.</summary>
[CollectionDefinition("process-wide state", DisableParallelization = true)]
public sealed class ProcessStateCollection;

/// <summary>The pipeline never changes TorchSharp's process-wide defaults or the default generator's state.</summary>
[Collection("process-wide state")]
public sealed class ProcessStateTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Fact]
    public void TrainingAndEvaluationLeaveDefaultsAlone()
    {
        var dtype = get_default_dtype();
        var rngBefore = TorchSharp.torch.random.get_rng_state();
        using (var tuned = EndToEndTests.Configured(fixture).WithTrainingOptions(o => o with { Epochs = 1 }).Train(PipelineFixture.Examples(12, seed: 1)))
        {
            tuned.Evaluate(PipelineFixture.Examples(3, seed: 2));
        }

        get_default_dtype().Should().Be(dtype);
        using var rngAfter = TorchSharp.torch.random.get_rng_state();
        // Dropout 0 in this configuration and seeded LoRA init: nothing drew from the default generator.
        TensorChecks.Exactly(rngAfter, rngBefore).Should().BeTrue("the pipeline seeds its own generators, never the default one");
        rngBefore.Dispose();
    }
}
