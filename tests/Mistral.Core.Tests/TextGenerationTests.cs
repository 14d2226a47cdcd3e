using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests;

public class TextGenerationTests
{
    private static (MistralForCausalLM, MistralTokenizer) Setup()
    {
        var tokenizer = MistralTokenizer.FromFile(TestPaths.FixturePath("tokenizer", "tiny-bpe.model"), TokenizerOptions.BatchedGeneration);
        MistralConfig config = TinyModels.Tiny(window: 8) with { VocabSize = tokenizer.VocabSize };
        return (TinyModels.RandomModel(config, seed: 21), tokenizer);
    }

    [Fact]
    public async Task StreamedPiecesConcatenateToTheGeneratedText()
    {
        var (model, tokenizer) = Setup();
        using (model)
        {
            var generator = new TextGenerator(model, tokenizer);
            var options = GenerationOptions.Greedy with { MaxNewTokens = 30, EosTokenIds = [] };
            GenerationResult full = generator.Generate("The cat sat on the", options);
            var pieces = new List<string>();
            await foreach (string piece in generator.StreamAsync("The cat sat on the", options))
            {
                pieces.Add(piece);
            }

            string.Concat(pieces).Should().Be(full.Sequences[0].Text);
            full.Sequences[0].Text.Should().Be(tokenizer.Decode(full.Sequences[0].TokenIds));
            pieces.Count.Should().BeGreaterThan(1);
            full.Sequences[0].PromptTokenIds.Should().Equal(tokenizer.Encode("The cat sat on the"));
        }
    }

    [Fact]
    public async Task StopStringCutsTheTextAndTheStream()
    {
        var (model, tokenizer) = Setup();
        using (model)
        {
            var generator = new TextGenerator(model, tokenizer);
            var options = GenerationOptions.Greedy with { MaxNewTokens = 40, EosTokenIds = [] };
            string text = generator.Generate("Hello", options).Sequences[0].Text!;
            text.Length.Should().BeGreaterThan(6);
            string stop = text.Substring(4, 2);
            int cut = text.IndexOf(stop, StringComparison.Ordinal);

            GenerationResult stopped = generator.Generate("Hello", options with { StopStrings = [stop] });
            stopped.Sequences[0].Text.Should().Be(text[..cut]);
            stopped.Sequences[0].FinishReason.Should().Be(FinishReason.StopString);
            stopped.Sequences[0].TokenIds.Count.Should().BeLessThan(40);

            var pieces = new List<string>();
            await foreach (string piece in generator.StreamAsync("Hello", options with { StopStrings = [stop] }))
            {
                pieces.Add(piece);
            }

            string.Concat(pieces).Should().Be(text[..cut]);
        }
    }

    [Fact]
    public async Task CancellationStopsTheStream()
    {
        var (model, tokenizer) = Setup();
        using (model)
        {
            var generator = new TextGenerator(model, tokenizer);
            using var cts = new CancellationTokenSource();
            var pieces = new List<string>();
            Func<Task> act = async () =>
            {
                await foreach (string piece in generator.StreamAsync("Hello", GenerationOptions.Greedy with { MaxNewTokens = 500, EosTokenIds = [] }, cts.Token))
                {
                    pieces.Add(piece);
                    cts.Cancel();
                }
            };
            await act.Should().ThrowAsync<OperationCanceledException>();
            pieces.Count.Should().BeLessThan(100);

            Action sync = () => generator.Generate("Hello", GenerationOptions.Greedy, new CancellationToken(canceled: true));
            sync.Should().Throw<OperationCanceledException>();
        }
    }

    [Fact]
    public void BatchOfTextPromptsEqualsOneByOne()
    {
        var (model, tokenizer) = Setup();
        using (model)
        {
            var generator = new TextGenerator(model, tokenizer);
            var options = GenerationOptions.Greedy with { MaxNewTokens = 12, EosTokenIds = [] };
            string[] prompts = ["A much longer prompt about the weather today", "Hi"];
            var batch = generator.Generate(prompts, options);
            for (int i = 0; i < prompts.Length; i++)
            {
                batch.Sequences[i].Text.Should().Be(generator.Generate(prompts[i], options).Sequences[0].Text);
            }
        }
    }
}
