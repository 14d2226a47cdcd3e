namespace Mistral.Eval.Prompts;

/// <summary>The prompt as fitted, with its length and what was changed to fit it.</summary>
/// <param name="Prompt">The final prompt text.</param>
/// <param name="PromptTokens">Its length in tokens.</param>
/// <param name="OriginalPromptTokens">The length of the prompt before anything was dropped or cut.</param>
/// <param name="Budget">The budget it was fitted to.</param>
/// <param name="FewShotExamplesKept">Few-shot blocks kept.</param>
/// <param name="FewShotExamplesDropped">Few-shot blocks dropped (from the end).</param>
/// <param name="InputCharactersRemoved">UTF-16 characters cut from the end of the input text.</param>
public sealed record PromptFitResult(
    string Prompt,
    int PromptTokens,
    int OriginalPromptTokens,
    PromptBudget Budget,
    int FewShotExamplesKept,
    int FewShotExamplesDropped,
    int InputCharactersRemoved)
{
    /// <summary>Whether the prompt plus <see cref="PromptBudget.MaxNewTokens"/> fits the context.</summary>
    public bool Fits => PromptTokens <= Budget.MaxPromptTokens;

    /// <summary>Whether anything was dropped or cut.</summary>
    public bool Changed => FewShotExamplesDropped > 0 || InputCharactersRemoved > 0;

    /// <summary>A one-line account of the fit, for logs and reports.</summary>
    /// <returns>The description.</returns>
    public string Describe()
    {
        var what = new List<string>();
        if (FewShotExamplesDropped > 0)
        {
            what.Add($"dropped {FewShotExamplesDropped} of {FewShotExamplesKept + FewShotExamplesDropped} few-shot examples");
        }

        if (InputCharactersRemoved > 0)
        {
            what.Add($"cut {InputCharactersRemoved} characters from the end of the input");
        }

        string change = what.Count == 0 ? "unchanged" : string.Join(" and ", what);
        return $"prompt {PromptTokens} tokens (was {OriginalPromptTokens}) + max_new_tokens {Budget.MaxNewTokens} within context {Budget.ContextLength}: {(Fits ? "fits" : "does not fit")}, {change}";
    }
}
