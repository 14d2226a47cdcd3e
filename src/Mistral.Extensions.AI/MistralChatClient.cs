using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using CoreFinishReason = Mistral.Core.Generation.FinishReason;

namespace Mistral.Extensions.AI;

/// <summary>
/// A Microsoft.Extensions.AI <see cref="IChatClient"/> over a Mistral model and its tokenizer (optionally with a LoRA
/// adapter): the conversation is rendered in <see cref="MistralChatClientOptions.Format"/>, generated with
/// <see cref="TextGenerator"/>, and returned with usage counts and a finish reason. One generation runs at a time per
/// client (others wait); the client does not own the model.
/// </summary>
public sealed class MistralChatClient : IChatClient
{
    private readonly TextGenerator generator;
    private readonly MistralTokenizer tokenizer;
    private readonly SemaphoreSlim gate = new(1, 1);
    private readonly ChatClientMetadata metadata;

    /// <summary>Creates a client over a model (with or without LoRA layers) and its tokenizer.</summary>
    public MistralChatClient(MistralForCausalLM model, MistralTokenizer tokenizer, MistralChatClientOptions? options = null,
        ILogger<TokenGenerator>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        this.tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        Options = options ?? new MistralChatClientOptions();
        Options.Generation.Validate();
        generator = new TextGenerator(model, tokenizer, logger);
        metadata = new ChatClientMetadata("Mistral.NET", null, Options.ModelId);
    }

    /// <summary>Creates a client over a LoRA-adapted model (see <see cref="PeftAdapter.Load"/>) and its tokenizer.</summary>
    public MistralChatClient(LoraModel adapted, MistralTokenizer tokenizer, MistralChatClientOptions? options = null,
        ILogger<TokenGenerator>? logger = null)
        : this((adapted ?? throw new ArgumentNullException(nameof(adapted))).Model, tokenizer, options, logger)
    {
    }

    /// <summary>Loads a PEFT adapter folder into <paramref name="model"/> (in place) and creates a client over it.</summary>
    public static MistralChatClient WithAdapter(MistralForCausalLM model, MistralTokenizer tokenizer, string adapterFolder,
        MistralChatClientOptions? options = null, CancellationToken cancellationToken = default) =>
        new(PeftAdapter.Load(model, adapterFolder, cancellationToken: cancellationToken), tokenizer, options);

    /// <summary>The client's settings.</summary>
    public MistralChatClientOptions Options { get; }

    /// <summary>
    /// The generation options a request runs with: <see cref="MistralChatClientOptions.Generation"/> overridden by
    /// <paramref name="chat"/> — temperature (null or 0: greedy, else sampling), top-p, top-k, max output tokens, stop
    /// sequences and seed.
    /// </summary>
    public static GenerationOptions ToGenerationOptions(ChatOptions? chat, GenerationOptions defaults)
    {
        ArgumentNullException.ThrowIfNull(defaults);
        if (chat is null)
        {
            return defaults;
        }

        GenerationOptions g = defaults;
        if (chat.Temperature is null or 0f)
        {
            g = g with { DoSample = false };
        }
        else
        {
            g = g with { DoSample = true, Temperature = chat.Temperature.Value };
        }

        if (chat.TopP is float topP)
        {
            g = g with { TopP = topP };
        }

        if (chat.TopK is int topK)
        {
            g = g with { TopK = topK };
        }

        if (chat.MaxOutputTokens is int max)
        {
            g = g with { MaxNewTokens = max };
        }

        if (chat.StopSequences is { Count: > 0 } stops)
        {
            g = g with { StopStrings = [.. stops] };
        }

        if (chat.Seed is long seed)
        {
            g = g with { Seed = unchecked((ulong)seed) };
        }

        g.Validate();
        return g;
    }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        (int[] prompt, GenerationOptions generation) = Prepare(messages, options);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Generation is synchronous tensor work: give it its own thread.
            GeneratedSequence sequence = await Task.Factory.StartNew(() => generator.Generate(prompt, generation, cancellationToken),
                cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
            return new ChatResponse(new ChatMessage(ChatRole.Assistant, sequence.Text ?? string.Empty))
            {
                ModelId = Options.ModelId,
                ResponseId = Guid.NewGuid().ToString("N"),
                CreatedAt = DateTimeOffset.UtcNow,
                FinishReason = Map(sequence.FinishReason),
                Usage = Usage(prompt.Length, sequence.TokenIds.Count),
            };
        }
        finally
        {
            gate.Release();
        }
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        (int[] prompt, GenerationOptions generation) = Prepare(messages, options);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            string responseId = Guid.NewGuid().ToString("N");
            DateTimeOffset created = DateTimeOffset.UtcNow;
            GeneratedSequence? finished = null;
            await foreach (string piece in generator.StreamAsync(prompt, generation, s => finished = s, cancellationToken).ConfigureAwait(false))
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece)
                {
                    ModelId = Options.ModelId,
                    ResponseId = responseId,
                    MessageId = responseId,
                    CreatedAt = created,
                };
            }

            if (finished is not null)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(prompt.Length, finished.TokenIds.Count))])
                {
                    ModelId = Options.ModelId,
                    ResponseId = responseId,
                    MessageId = responseId,
                    CreatedAt = created,
                    FinishReason = Map(finished.FinishReason),
                };
            }
        }
        finally
        {
            gate.Release();
        }
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        if (serviceType == typeof(ChatClientMetadata))
        {
            return metadata;
        }

        if (serviceType == typeof(MistralTokenizer))
        {
            return tokenizer;
        }

        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Releases the client's lock; the model and tokenizer are not disposed.</summary>
    public void Dispose() => gate.Dispose();

    private (int[] Prompt, GenerationOptions Generation) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        GenerationOptions generation = ToGenerationOptions(options, Options.Generation);
        int[] prompt = MistralChatTemplate.Encode(tokenizer, messages, Options.Format, Options.PlainSeparator);
        return (prompt, generation);
    }

    private static UsageDetails Usage(int input, int output) =>
        new() { InputTokenCount = input, OutputTokenCount = output, TotalTokenCount = input + output };

    private static ChatFinishReason Map(CoreFinishReason reason) => reason switch
    {
        CoreFinishReason.Length => ChatFinishReason.Length,
        _ => ChatFinishReason.Stop,
    };
}
