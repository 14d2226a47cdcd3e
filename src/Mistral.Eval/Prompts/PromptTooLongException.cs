namespace Mistral.Eval.Prompts;

/// <summary>A prompt plus the tokens to generate does not fit the model's context, and the fit policy could not (or was not allowed to) shorten it.</summary>
public sealed class PromptTooLongException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The explanation, with the token counts.</param>
    /// <param name="promptTokens">The prompt's token count (as built before giving up).</param>
    /// <param name="budget">The budget it did not fit.</param>
    public PromptTooLongException(string message, int promptTokens, PromptBudget budget)
        : base(message)
    {
        PromptTokens = promptTokens;
        Budget = budget;
    }

    /// <summary>The prompt's token count.</summary>
    public int PromptTokens { get; }

    /// <summary>The budget it did not fit.</summary>
    public PromptBudget Budget { get; }

    /// <summary>How many tokens too many: prompt + max_new_tokens − context length.</summary>
    public int TokensOver => PromptTokens - Budget.MaxPromptTokens;
}
