namespace Mistral.Peft.Training;

/// <summary>
/// A prompt/target text pair for completion-only training (the loss is on the target). <c>Mistral.Eval</c>'s
/// <c>SftExample</c> maps to it directly: <c>new CompletionExample(e.Prompt, e.Target)</c>.
/// </summary>
/// <param name="Prompt">The prompt text, e.g. <c>"### Sentence:hello ### Class:"</c>.</param>
/// <param name="Target">The text the model should produce after the prompt, e.g. <c>"greeting"</c>.</param>
public sealed record CompletionExample(string Prompt, string Target);

/// <summary>A tokenized prompt/target pair for completion-only training (ids without BOS/EOS; the builder frames them).</summary>
/// <param name="PromptIds">The prompt's token ids (not in the loss).</param>
/// <param name="TargetIds">The target's token ids (in the loss).</param>
public sealed record TokenizedCompletion(IReadOnlyList<int> PromptIds, IReadOnlyList<int> TargetIds);
