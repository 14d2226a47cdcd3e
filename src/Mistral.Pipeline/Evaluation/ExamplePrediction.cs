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
/// <param name="LatencyMilliseconds">Wall time to this example's result: its generation batch's whole time (examples are generated in batches) plus its own label-likelihood pass.</param>
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

    /// <summary>
    /// Label-likelihood classification, in label order (null when not run): log p of each label's text after the prompt,
    /// summed over its tokens, conditioned on the token prefix shared by the prompt and every "prompt + label" text (so it
    /// may include a few prompt characters that tokenize together with a label, and EOS when the fine-tuning texts ended
    /// with it). It ranks the labels of one example; it is not comparable across examples.
    /// </summary>
    public IReadOnlyList<double>? LabelLogProbabilities { get; init; }
}
