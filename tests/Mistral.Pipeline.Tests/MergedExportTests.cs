using System.Text.Json.Nodes;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Pipeline.Tests;

/// <summary>A merged export is a plain HF checkpoint whose logits equal the adapted model's.</summary>
public sealed class MergedExportTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Theory]
    [InlineData(false, 1e-5)]
    [InlineData(true, 1e-4)]
    public void MergedCheckpointLoadsStrictlyAndGivesTheAdaptedLogits(bool quantized, double tolerance)
    {
        var builder = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").WithSeed(3).ForClassification();
        builder = quantized
            ? builder.WithQLoRA(r: 4, targetModules: LoraOptions.AllProjections)
            : builder.WithLoRA(r: 4, targetModules: LoraOptions.AllProjections);
        using LoadedPipeline pipeline = builder.Build();
        RandomizeB(pipeline.Lora!);
        string folder = Path.Combine(TestPaths.TempDir(), "merged");

        pipeline.SaveMerged(folder, new MergedExportOptions { DType = ScalarType.Float32, MaxShardBytes = 400_000 });

        Directory.GetFiles(folder, "model-*-of-*.safetensors").Length.Should().BeGreaterThan(1);
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "model.safetensors.index.json")))!;
        index["weight_map"]!.AsObject().Count.Should().Be(2 + 1 + (9 * fixture.Config.NumHiddenLayers));
        File.Exists(Path.Combine(folder, "tokenizer.model")).Should().BeTrue();
        var config = MistralConfig.FromFile(Path.Combine(folder, "config.json"));
        config.TorchDtype.Should().Be("float32");
        File.ReadAllText(Path.Combine(folder, "config.json")).Should().NotContain("quantization_config");

        using var merged = new MistralForCausalLM(config, ScalarType.Float32, CPU);
        CheckpointLoader.Load(merged, folder); // strict: every HF name present, nothing extra
        merged.eval();
        using var ids = TinyModels.Ids(seed: 9, batch: 2, seq: 12, vocab: fixture.Config.VocabSize);
        using var noGrad = inference_mode();
        using var expected = pipeline.Model.forward(new CausalLMInput(ids));
        using var actual = merged.forward(new CausalLMInput(ids));
        TensorChecks.MaxAbsDiff(actual.Logits, expected.Logits).Should().BeLessThan((float)tolerance);
        using (pipeline.Lora!.AdaptersDisabled())
        using (var baseLogits = pipeline.Model.forward(new CausalLMInput(ids)))
        {
            TensorChecks.MaxAbsDiff(actual.Logits, baseLogits.Logits).Should().BeGreaterThan(1e-3f, "the adapter's update is in the merged weights");
        }

        pipeline.Lora.IsMerged.Should().BeFalse("exporting leaves the pipeline's model unchanged");
    }

    [Fact]
    public void ANonEmptyDestinationIsRefusedAndNothingIsLeftBehind()
    {
        using LoadedPipeline pipeline = MistralPipeline.Create().FromPretrained(fixture.Folder).OnDevice("cpu").WithLoRA(r: 2).Build();
        string parent = TestPaths.TempDir();
        string folder = Path.Combine(parent, "out");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "keep.txt"), "x");
        var act = () => pipeline.SaveMerged(folder);
        act.Should().Throw<IOException>().WithMessage("*exists and is not empty*");

        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var cancelled = () => pipeline.SaveMerged(Path.Combine(parent, "other"), null, null, cts.Token);
        cancelled.Should().Throw<OperationCanceledException>();
        Directory.GetFileSystemEntries(parent).Select(Path.GetFileName).Should().Equal("out");

        pipeline.SaveMerged(folder, new MergedExportOptions { Overwrite = true });
        File.Exists(Path.Combine(folder, "keep.txt")).Should().BeFalse();
        File.Exists(Path.Combine(folder, "model.safetensors")).Should().BeTrue();
        Directory.GetFileSystemEntries(parent).Select(Path.GetFileName).Should().Equal("out");
    }

    private static void RandomizeB(LoraModel lora)
    {
        using var gen = new Generator(11);
        using var noGrad = no_grad();
        foreach (var layer in lora.Layers.Values)
        {
            layer.LoraB.copy_(0.05f * randn(layer.LoraB.shape, ScalarType.Float32, generator: gen));
        }
    }
}
