namespace Mistral.Eval.Data;

/// <summary>
/// One dataset row: an input text and its target (for classification the sentence and its label, for
/// summarization the dialogue and its summary).
/// </summary>
/// <param name="Input">The input text (e.g. 20 Newsgroups' <c>text</c>, Samsum's <c>dialogue</c>).</param>
/// <param name="Target">The target text (e.g. <c>label</c>, <c>summary</c>).</param>
public sealed record Example(string Input, string Target)
{
    /// <summary>
    /// Where the row came from: for JSONL and CSV the 1-based line on which the record starts, for Parquet
    /// the 0-based row index (as pandas shows it); null for rows not read from a file.
    /// </summary>
    public long? SourceRow { get; init; }
}
