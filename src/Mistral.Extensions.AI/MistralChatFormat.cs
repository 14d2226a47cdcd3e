namespace Mistral.Extensions.AI;

/// <summary>How <see cref="MistralChatClient"/> turns a conversation into the model's prompt.</summary>
public enum MistralChatFormat
{
    /// <summary>
    /// Plain completion, for base (pretrained) checkpoints: BOS, then the messages' texts joined by
    /// <see cref="MistralChatClientOptions.PlainSeparator"/>, roles ignored; the model continues the text.
    /// </summary>
    Plain,

    /// <summary>
    /// Mistral's instruct template: <c>&lt;s&gt;[INST] {system}\n\n{user} [/INST]{assistant}&lt;/s&gt;[INST] {user} [/INST]</c>
    /// — BOS once, EOS after each assistant turn, the system message(s) prepended to the first user turn.
    /// </summary>
    Instruct,
}
