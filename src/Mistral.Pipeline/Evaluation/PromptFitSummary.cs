namespace Mistral.Pipeline;

/// <summary>How the evaluation's prompts fitted the context (nothing is shortened silently).</summary>
/// <param name="ContextLength">The context the prompts were fitted to (prompt + new tokens).</param>
/// <param name="MaxNewTokens">Tokens reserved for the answer: the generation's max new tokens, or the longest label + 1 when only label likelihood runs.</param>
/// <param name="PromptsShortened">Prompts that lost few-shot examples or input text.</param>
/// <param name="FewShotExamplesDropped">Few-shot examples dropped over all prompts.</param>
/// <param name="InputsTruncated">Prompts whose input text was cut.</param>
/// <param name="MeanPromptTokens">Mean prompt length in tokens.</param>
/// <param name="MaxPromptTokens">Longest prompt in tokens.</param>
/// <param name="MeanFewShotExamples">Mean few-shot examples per prompt (0 outside few-shot).</param>
public sealed record PromptFitSummary(
    int ContextLength,
    int MaxNewTokens,
    int PromptsShortened,
    int FewShotExamplesDropped,
    int InputsTruncated,
    double MeanPromptTokens,
    int MaxPromptTokens,
    double MeanFewShotExamples);
