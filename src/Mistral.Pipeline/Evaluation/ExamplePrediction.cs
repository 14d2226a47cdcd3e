using Mistral.Core.Generation;

namespace Mistral.Pipeline;

/// <summary>What the pipeline did with one test example (one line of the predictions JSONL).</summary>
/// <param name="Index">Position in the test list.</param>
/// <param name="Input">The example's input text.</param>
/// <param name="Target">The gold target.</param>
/// <param name="PromptTokens">Tokens of the prompt as fed (BOS included).</param>
/// <param name="FewShotExamples">Few-shot examples in the prompt (after fitting to the context).</param>
/// <param name="InputCharactersRemoved">Characters cut from the end of the input to fit the context (0 when it fit).</param>
/// <param name="Generated">The generated continuation (null when only label likelihood ran).</param>
/// <param name="Prediction">The task's prediction from <paramref name="Generated"/> (null when only label likelihood ran).</param>
/// <param name="IsParsed">Whether <paramref name="Generated"/> parsed (null when only label likelihood ran).</param>
/// <param name="GeneratedTokens">New tokens generated.</param>
/// <param name="FinishReason">Why generation stopped (null when only label likelihood ran).</param>
/// <param name="LatencyMilliseconds">Wall time from the start of the example's generation batch to its result.</param>
public sealed record ExamplePrediction(
    int Index,
    string Input,
    string Target,
    int PromptTokens,
    int FewShotExamples,
    int InputCharactersRemoved,
    string? Generated,
    string? Prediction,
    bool? IsParsed,
    int GeneratedTokens,
    FinishReason? FinishReason,
    double LatencyMilliseconds)
{
    /// <summary>Label-likelihood classification: the label with the highest log p(label | prompt), or null when not run.</summary>
    public string? LikelihoodPrediction { get; init; }

    /// <summary>Label-likelihood classification: log p of each candidate label (summed over its tokens), in label order; null when not run.</summary>
    public IReadOnlyList<double>? LabelLogProbabilities { get; init; }
}
