namespace Mistral.Eval.Prompts;

/// <summary>A prompt plus the tokens to generate does not fit the model's context, and the fit policy could not (or was not allowed to) shorten it.</summary>
public sealed class PromptTooLongException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The explanation, with the token counts.</param>
    /// <param name="promptTokens">The prompt's token count (as built before giving up).</param>
    /// <param name="budget">The budget it did not fit.</param>
    public PromptTooLongException(string message, int promptTokens, PromptBudget budget)
        : this(message, promptTokens, budget, null)
    {
    }

    /// <summary>Creates the exception with the exception that caused it (e.g. the same failure, re-thrown naming the example).</summary>
    /// <param name="message">What does not fit, and by how much.</param>
    /// <param name="promptTokens">The prompt's token count.</param>
    /// <param name="budget">The budget it did not fit.</param>
    /// <param name="innerException">The original exception, or null.</param>
    public PromptTooLongException(string message, int promptTokens, PromptBudget budget, Exception? innerException)
        : base(message, innerException)
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
