namespace Mistral.Eval.Prompts;

/// <summary>What <see cref="PromptFitter"/> does when a prompt plus the tokens to generate exceed the context.</summary>
public enum PromptFitPolicy
{
    /// <summary>Throw <see cref="PromptTooLongException"/> saying by how much the prompt is over.</summary>
    Fail,

    /// <summary>Drop few-shot examples from the end (the last one first) until it fits; fail if none left is not enough.</summary>
    DropFewShotExamples,

    /// <summary>Cut the end off the input text (keeping its beginning, never splitting a character) until it fits; fail if an empty input is not enough.</summary>
    TruncateInput,

    /// <summary>Drop few-shot examples first; if the prompt with no examples is still too long, truncate the input.</summary>
    DropFewShotExamplesThenTruncateInput,
}
