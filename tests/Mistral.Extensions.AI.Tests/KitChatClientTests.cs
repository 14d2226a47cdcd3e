using Microsoft.Extensions.AI;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using static TorchSharp.torch;

namespace Mistral.Extensions.AI.Tests;

/// <summary>The kit's pretrained small Mistral (kit/model), loaded once for the chat client tests.</summary>
public sealed class KitModelFixture : IDisposable
{
    public KitModelFixture()
    {
        Folder = TestPaths.RepoPath("kit", "model");
        Model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(Folder, "config.json")), ScalarType.Float32, CPU);
        CheckpointLoader.Load(Model, Folder);
        Model.eval();
        Tokenizer = MistralTokenizer.FromFolder(Folder);
    }

    public string Folder { get; }

    public MistralForCausalLM Model { get; }

    public MistralTokenizer Tokenizer { get; }

    public void Dispose() => Model.Dispose();
}

/// <summary>Drives <see cref="MistralChatClient"/> through <see cref="IChatClient"/> only, on the kit model.</summary>
public sealed class KitChatClientTests(KitModelFixture kit) : IClassFixture<KitModelFixture>
{
    private IChatClient Client(MistralChatFormat format = MistralChatFormat.Plain) =>
        new MistralChatClient(kit.Model, kit.Tokenizer, new MistralChatClientOptions { Format = format, ModelId = "kit" });

    [Fact]
    public async Task GreedyResponseEqualsTextGeneratorOnTheRenderedPrompt()
    {
        using IChatClient client = Client();
        ChatResponse response = await client.GetResponseAsync("Python library for", new ChatOptions { MaxOutputTokens = 24 });

        GenerationResult expected = new TextGenerator(kit.Model, kit.Tokenizer).Generate("Python library for", GenerationOptions.Greedy with { MaxNewTokens = 24 });
        response.Text.Should().Be(expected.Sequences[0].Text);
        response.Text.Should().NotBeEmpty();
        response.ModelId.Should().Be("kit");
        response.Messages.Should().ContainSingle().Which.Role.Should().Be(ChatRole.Assistant);
        response.FinishReason.Should().Be(expected.Sequences[0].FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop);
    }

    [Fact]
    public async Task InstructResponseEqualsTextGeneratorOnTheRenderedTokenIds()
    {
        ChatMessage[] conversation = [new(ChatRole.System, "Answer briefly."), new(ChatRole.User, "Rust crate")];
        using IChatClient client = Client(MistralChatFormat.Instruct);
        ChatResponse response = await client.GetResponseAsync(conversation, new ChatOptions { MaxOutputTokens = 16, Temperature = 0 });

        int[] ids = [kit.Tokenizer.BosId, .. kit.Tokenizer.Encode("[INST] Answer briefly.\n\nRust crate [/INST]", false, false)];
        GeneratedSequence expected = new TextGenerator(kit.Model, kit.Tokenizer).Generate(ids, GenerationOptions.Greedy with { MaxNewTokens = 16 });
        response.Text.Should().Be(expected.Text);
        response.Usage!.InputTokenCount.Should().Be(ids.Length);
    }

    [Fact]
    public async Task StreamingPiecesConcatenateToTheNonStreamingTextWithTheSameUsage()
    {
        using IChatClient client = Client();
        var options = new ChatOptions { MaxOutputTokens = 30 };
        ChatResponse whole = await client.GetResponseAsync("GNOME", options);

        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync("GNOME", options))
        {
            updates.Add(update);
        }

        updates.Count(u => u.Text.Length > 0).Should().BeGreaterThan(1, "the text arrives in pieces");
        string.Concat(updates.Select(u => u.Text)).Should().Be(whole.Text);
        ChatResponse combined = updates.ToChatResponse();
        combined.Text.Should().Be(whole.Text);
        combined.FinishReason.Should().Be(whole.FinishReason);
        combined.Usage!.InputTokenCount.Should().Be(whole.Usage!.InputTokenCount);
        combined.Usage.OutputTokenCount.Should().Be(whole.Usage.OutputTokenCount);
        combined.Usage.TotalTokenCount.Should().Be(whole.Usage.TotalTokenCount);
    }

    [Fact]
    public async Task UsageCountsEqualTheTokenizersCounts()
    {
        using IChatClient client = Client();
        ChatResponse response = await client.GetResponseAsync("Command-line tool to", new ChatOptions { MaxOutputTokens = 7 });

        response.FinishReason.Should().Be(ChatFinishReason.Length);
        response.Usage!.InputTokenCount.Should().Be(kit.Tokenizer.CountTokens("Command-line tool to", addBeginningOfSentence: true, addEndOfSentence: false));
        response.Usage.OutputTokenCount.Should().Be(7);
        response.Usage.TotalTokenCount.Should().Be(response.Usage.InputTokenCount + 7);
        kit.Tokenizer.CountTokens(response.Text, false, false).Should().BeInRange(1, 7);
    }

    [Fact]
    public async Task StopSequencesCutTheTextAndFinishWithStop()
    {
        using IChatClient client = Client();
        ChatResponse free = await client.GetResponseAsync("Python library for", new ChatOptions { MaxOutputTokens = 24 });
        string stop = free.Text.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2];

        ChatResponse cut = await client.GetResponseAsync("Python library for", new ChatOptions { MaxOutputTokens = 24, StopSequences = [stop] });
        cut.Text.Should().Be(free.Text[..free.Text.IndexOf(stop, StringComparison.Ordinal)]);
        cut.FinishReason.Should().Be(ChatFinishReason.Stop);
    }

    [Fact]
    public async Task SamplingIsReproducibleBySeedAndTemperatureZeroIsGreedy()
    {
        using IChatClient client = Client();
        var sampled = new ChatOptions { MaxOutputTokens = 20, Temperature = 1.5f, TopP = 0.95f, TopK = 100, Seed = 7 };
        string a = (await client.GetResponseAsync("GNOME", sampled)).Text;
        string b = (await client.GetResponseAsync("GNOME", sampled)).Text;
        a.Should().Be(b, "the same seed gives the same sample");

        var texts = new HashSet<string>();
        for (long seed = 1; seed <= 4; seed++)
        {
            ChatOptions seeded = sampled.Clone();
            seeded.Seed = seed;
            texts.Add((await client.GetResponseAsync("GNOME", seeded)).Text);
        }

        texts.Count.Should().BeGreaterThan(1, "different seeds sample different texts at temperature 1.5");

        string greedy = (await client.GetResponseAsync("GNOME", new ChatOptions { MaxOutputTokens = 20 })).Text;
        string zero = (await client.GetResponseAsync("GNOME", new ChatOptions { MaxOutputTokens = 20, Temperature = 0, Seed = 3 })).Text;
        zero.Should().Be(greedy);
    }

    [Fact]
    public async Task CancellationStopsBothCalls()
    {
        using IChatClient client = Client();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Func<Task> call = () => client.GetResponseAsync("GNOME", new ChatOptions { MaxOutputTokens = 500 }, cts.Token);
        await call.Should().ThrowAsync<OperationCanceledException>();

        using var mid = new CancellationTokenSource();
        int pieces = 0;
        Func<Task> stream = async () =>
        {
            await foreach (ChatResponseUpdate _ in client.GetStreamingResponseAsync("GNOME", new ChatOptions { MaxOutputTokens = 500, StopSequences = null }, mid.Token))
            {
                if (++pieces == 2)
                {
                    mid.Cancel();
                }
            }
        };
        await stream.Should().ThrowAsync<OperationCanceledException>();
        pieces.Should().BeLessThan(10);

        // The client is usable after a cancelled call (its lock was released).
        (await client.GetResponseAsync("GNOME", new ChatOptions { MaxOutputTokens = 3 })).Usage!.OutputTokenCount.Should().Be(3);
    }

    [Fact]
    public async Task ConcurrentCallsRunOneAtATimeAndGiveTheSequentialResults()
    {
        using IChatClient client = Client();
        var options = new ChatOptions { MaxOutputTokens = 12 };
        string[] prompts = ["GNOME", "Rust crate", "Python library for"];
        var sequential = new List<string>();
        foreach (string p in prompts)
        {
            sequential.Add((await client.GetResponseAsync(p, options)).Text);
        }

        string[] parallel = await Task.WhenAll(prompts.Select(p => client.GetResponseAsync(p, options)).Select(async t => (await t).Text));
        parallel.Should().Equal(sequential);
    }

    [Fact]
    public void MetadataAndServicesAreExposed()
    {
        using IChatClient client = Client();
        client.GetService<ChatClientMetadata>()!.DefaultModelId.Should().Be("kit");
        client.GetService<MistralTokenizer>().Should().BeSameAs(kit.Tokenizer);
        client.GetService<IChatClient>().Should().BeSameAs(client);
    }
}
