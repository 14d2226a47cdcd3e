namespace Mistral.Eval.Prompts;

/// <summary>
/// One supervised fine-tuning text: a prompt followed by its target, with the boundary kept so a trainer can
/// mask the prompt out of the loss. (The study computed the loss on every token, prompt included.)
/// </summary>
/// <param name="Prompt">The prompt part (what the model is conditioned on).</param>
/// <param name="Target">The target part (what the model should generate).</param>
public sealed record SftExample(string Prompt, string Target)
{
    /// <summary>The full training text: <see cref="Prompt"/> immediately followed by <see cref="Target"/>.</summary>
    public string Text => Prompt + Target;

    /// <summary>The character (UTF-16 code unit) offset in <see cref="Text"/> where the target begins.</summary>
    public int PromptLength => Prompt.Length;
}
