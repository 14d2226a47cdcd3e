namespace Mistral.Peft.Training;

/// <summary>The host-side arrays of one micro-batch, row-major [<see cref="Rows"/>, <see cref="Columns"/>].</summary>
/// <param name="InputIds">Token ids (padding included).</param>
/// <param name="Rows">Sequences in the micro-batch.</param>
/// <param name="Columns">Tokens per row (the longest sequence for padded data).</param>
/// <param name="AttentionMask">1 for real tokens, 0 for padding; null when there is no padding.</param>
/// <param name="Labels">Labels (−100 = not in the loss); null when the labels are the input ids.</param>
/// <param name="Tokens">Real (non-padding) tokens.</param>
/// <param name="TargetTokens">Positions whose next-token prediction is in the loss (labels[:, 1:] ≠ −100); at least 1.</param>
internal sealed record TrainingBatch(long[] InputIds, int Rows, int Columns, long[]? AttentionMask, long[]? Labels, long Tokens, long TargetTokens);
