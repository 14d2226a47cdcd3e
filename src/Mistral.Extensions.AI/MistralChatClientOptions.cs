using Mistral.Core.Generation;

namespace Mistral.Extensions.AI;

/// <summary>Settings of a <see cref="MistralChatClient"/>.</summary>
public sealed record MistralChatClientOptions
{
    /// <summary>The prompt format; <see cref="MistralChatFormat.Plain"/> (for base checkpoints) unless set.</summary>
    public MistralChatFormat Format { get; init; } = MistralChatFormat.Plain;

    /// <summary>
    /// Generation settings that <see cref="Microsoft.Extensions.AI.ChatOptions"/> start from (its values override these);
    /// greedy with 256 new tokens unless set.
    /// </summary>
    public GenerationOptions Generation { get; init; } = GenerationOptions.Greedy with { MaxNewTokens = 256 };

    /// <summary>The model id reported in responses and metadata.</summary>
    public string ModelId { get; init; } = "mistral";

    /// <summary>Joins the messages of a <see cref="MistralChatFormat.Plain"/> prompt.</summary>
    public string PlainSeparator { get; init; } = "\n";
}
