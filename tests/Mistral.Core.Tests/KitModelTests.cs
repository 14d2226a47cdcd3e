using System.Text.Json;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

/// <summary>
/// The kit's pretrained small Mistral (kit/model, pretrained by tools/kit/Pretrain with this library's trainer) is a
/// genuine HF checkpoint that loads strictly, and its greedy continuation of a fixed prompt is stable.
/// </summary>
public sealed class KitModelTests
{
    [Fact]
    public void KitCheckpointIsAGenuineHfFolderThatLoadsStrictly()
    {
        string folder = TestPaths.RepoPath("kit", "model");
        foreach (string file in new[] { "config.json", "model.safetensors", "tokenizer.model", "generation_config.json" })
        {
            File.Exists(Path.Combine(folder, file)).Should().BeTrue(file);
        }

        var config = MistralConfig.FromFile(Path.Combine(folder, "config.json"));
        config.SlidingWindow.Should().BeLessThan(config.MaxPositionEmbeddings, "the window must matter");
        config.NumKeyValueHeads.Should().BeLessThan(config.NumAttentionHeads, "GQA");
        using var model = new MistralForCausalLM(config, ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, folder); // strict
        long parameters = model.parameters().Sum(p => p.numel());
        parameters.Should().BeInRange(10_000_000, 20_000_000);
        new FileInfo(Path.Combine(folder, "model.safetensors")).Length.Should().BeLessThan(40_000_000);
        MistralTokenizer.FromFolder(folder).VocabSize.Should().Be(config.VocabSize);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "hf_check.json")));
        doc.RootElement.GetProperty("max_abs_logit_diff").GetDouble().Should().BeLessThan(1e-4, "transformers gave our logits (tools/kit/hf_check.py)");
    }

    [Fact]
    public void GreedyContinuationOfAFixedPromptIsStable()
    {
        string folder = TestPaths.RepoPath("kit", "model");
        using var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(folder, "config.json")), ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, folder);
        var tokenizer = MistralTokenizer.FromFolder(folder);
        var result = new TextGenerator(model, tokenizer).Generate("Python library for", GenerationOptions.Greedy with { MaxNewTokens = 24 });
        result.Sequences[0].TokenIds.Should().Equal(ExpectedIds);
        result.Sequences[0].Text.Should().Be(ExpectedText);
    }

    private static readonly int[] ExpectedIds = [2328, 275, 518, 596, 13, 5489, 273, 518, 353, 392, 259, 518, 353, 285, 2328, 275, 518, 596, 13, 7958, 1390, 689, 856, 7941];

    private const string ExpectedText = "manipulating the Python language\nThis Python library provides a Python library for manipulating the Python language\n(http://www.";
}
