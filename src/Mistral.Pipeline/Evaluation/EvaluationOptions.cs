namespace Mistral.Pipeline;

/// <summary>How the pipeline evaluates. Defaults: batches of 8 left-padded prompts, the model's attention window as the context, over-long prompts shortened and counted.</summary>
public sealed record EvaluationOptions
{
    /// <summary>Prompts generated together in one left-padded batch (prompts are grouped by length first); at least 1. The study generated one at a time (1). Default 8.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>
    /// Tokens a prompt plus its new tokens may use; null for the model's sliding window (4096 for Mistral-7B), else its
    /// <c>max_position_embeddings</c>. Beyond the window, early tokens (the instructions) are no longer attended directly.
    /// </summary>
    public int? ContextLength { get; init; }

    /// <summary>What happens to a prompt that does not fit: shorten it (few-shot examples dropped first, then the input's end cut; every change counted in the report) or fail. Default shorten.</summary>
    public PromptOverflowPolicy PromptOverflow { get; init; } = PromptOverflowPolicy.Shorten;

    /// <summary>The price of compute for the cost pillars; null for no cost figures.</summary>
    public CostModel? Cost { get; init; }

    /// <summary>Checks every option; throws naming the first invalid one.</summary>
    /// <returns>This instance.</returns>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public EvaluationOptions Validate()
    {
        if (BatchSize < 1)
        {
            throw new ArgumentException($"EvaluationOptions.BatchSize must be at least 1; got {BatchSize}.", nameof(BatchSize));
        }

        if (ContextLength is < 2)
        {
            throw new ArgumentException($"EvaluationOptions.ContextLength must be at least 2 or null; got {ContextLength}.", nameof(ContextLength));
        }

        if (!Enum.IsDefined(PromptOverflow))
        {
            throw new ArgumentException($"EvaluationOptions.PromptOverflow is not a PromptOverflowPolicy value ({PromptOverflow}).", nameof(PromptOverflow));
        }

        Cost?.Validate();
        return this;
    }
}

/// <summary>What to do with a prompt longer than the context allows.</summary>
public enum PromptOverflowPolicy
{
    /// <summary>Drop few-shot examples from the end, then cut the end of the input, until it fits; counted in <see cref="PromptFitSummary"/>.</summary>
    Shorten,

    /// <summary>Throw <see cref="Mistral.Eval.Prompts.PromptTooLongException"/> naming the example.</summary>
    Fail,
}
