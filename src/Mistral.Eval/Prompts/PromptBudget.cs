namespace Mistral.Eval.Prompts;

/// <summary>The token budget of one generation: the model's context length and how many tokens will be generated.</summary>
public sealed record PromptBudget
{
    /// <summary>Creates a budget.</summary>
    /// <param name="contextLength">The model's context length in tokens (e.g. 512 as the study trained, 8192, 32768).</param>
    /// <param name="maxNewTokens">Tokens reserved for generation (the study: 20 for classification, 100 for summarization).</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of range; the message names it.</exception>
    public PromptBudget(int contextLength, int maxNewTokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        if (maxNewTokens >= contextLength)
        {
            throw new ArgumentOutOfRangeException(nameof(maxNewTokens), maxNewTokens,
                $"maxNewTokens ({maxNewTokens}) must be less than contextLength ({contextLength}) to leave room for a prompt.");
        }

        ContextLength = contextLength;
        MaxNewTokens = maxNewTokens;
    }

    /// <summary>The context length in tokens.</summary>
    public int ContextLength { get; }

    /// <summary>The tokens reserved for generation.</summary>
    public int MaxNewTokens { get; }

    /// <summary>The most tokens a prompt may have: <see cref="ContextLength"/> − <see cref="MaxNewTokens"/>.</summary>
    public int MaxPromptTokens => ContextLength - MaxNewTokens;
}
