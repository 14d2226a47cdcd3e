using System.Globalization;

namespace Mistral.Peft.Training;

/// <summary>
/// Prompt/target examples for completion-only training, made by <see cref="SftCompletionBuilder"/>: one sequence per
/// example, the loss on the target tokens only, with an account of what the maximum length cut or left out.
/// </summary>
/// <remarks>
/// A micro-batch is right-padded to its longest example with <see cref="PadId"/>: attention mask 0 and label −100 on the
/// padding (padding is never attended to and never in the loss); labels are −100 on each prompt. <see cref="LoraTrainer"/>
/// normalizes the loss over the target tokens of the whole optimizer step (all its micro-batches together), as Hugging
/// Face transformers ≥ 4.46 does with <c>num_items_in_batch</c>.
/// </remarks>
public sealed class CompletionDataset : TrainingDataset
{
    internal CompletionDataset(IReadOnlyList<CompletionSequence> sequences, SftCompletionOptions options, int sourceCount,
        IReadOnlyList<int> droppedSourceIndices, long truncatedTokens, int boundaryMergeCount)
    {
        Sequences = sequences;
        MaxLength = options.MaxLength;
        PadId = options.EffectivePadId;
        SourceCount = sourceCount;
        DroppedSourceIndices = droppedSourceIndices;
        TruncatedTokens = truncatedTokens;
        BoundaryMergeCount = boundaryMergeCount;
        TruncatedCount = sequences.Count(s => s.Truncated);
        TokenCount = sequences.Sum(s => (long)s.Length);
        TargetTokenCount = sequences.Sum(s => (long)s.TargetTokens);
        LongestLength = sequences.Count == 0 ? 0 : sequences.Max(s => s.Length);
    }

    /// <summary>The examples, in the order of the pairs they came from (dropped pairs left out).</summary>
    public IReadOnlyList<CompletionSequence> Sequences { get; }

    /// <summary>Number of examples.</summary>
    public override int Count => Sequences.Count;

    /// <summary>The maximum example length the builder applied.</summary>
    public int MaxLength { get; }

    /// <summary>The id written into padding positions.</summary>
    public int PadId { get; }

    /// <summary>How many prompt/target pairs were given.</summary>
    public int SourceCount { get; }

    /// <summary>Examples that were longer than <see cref="MaxLength"/> and kept their first <see cref="MaxLength"/> tokens.</summary>
    public int TruncatedCount { get; }

    /// <summary>Tokens cut from the truncated examples that were kept.</summary>
    public long TruncatedTokens { get; }

    /// <summary>Pairs (by index) left out because no target token remained within <see cref="MaxLength"/> (the prompt filled it).</summary>
    public IReadOnlyList<int> DroppedSourceIndices { get; }

    /// <summary>
    /// Text pairs whose prompt, tokenized alone, is not a prefix of the tokenized prompt + target (a token spans the
    /// boundary); the spanning token is labelled as target. Always 0 for tokenized pairs.
    /// </summary>
    public int BoundaryMergeCount { get; }

    /// <summary>Tokens in all examples (no padding).</summary>
    public long TokenCount { get; }

    /// <summary>Tokens in the loss over all examples.</summary>
    public long TargetTokenCount { get; }

    /// <summary>The longest example's length.</summary>
    public int LongestLength { get; }

    /// <summary>
    /// One line for logs, e.g. <c>"3 examples from 4 prompt/target pairs (40 tokens, 9 in the loss, longest 16); max
    /// length 16: 1 truncated (5 tokens cut), 1 dropped (no target token left: pairs 2)"</c>.
    /// </summary>
    /// <returns>The description.</returns>
    public override string Describe()
    {
        string dropped = DroppedSourceIndices.Count == 0
            ? "0 dropped"
            : string.Create(CultureInfo.InvariantCulture,
                $"{DroppedSourceIndices.Count} dropped (no target token left: pairs {string.Join(", ", DroppedSourceIndices.Take(10))}{(DroppedSourceIndices.Count > 10 ? ", …" : "")})");
        string merged = BoundaryMergeCount == 0 ? "" : string.Create(CultureInfo.InvariantCulture,
            $"; {BoundaryMergeCount} with a token spanning the prompt/target boundary (labelled as target)");
        return string.Create(CultureInfo.InvariantCulture,
            $"{Count} examples from {SourceCount} prompt/target pairs ({TokenCount} tokens, {TargetTokenCount} in the loss, longest {LongestLength}); max length {MaxLength}: {TruncatedCount} truncated ({TruncatedTokens} tokens cut), {dropped}{merged}");
    }

    /// <inheritdoc />
    internal override TrainingBatch CreateBatch(IReadOnlyList<int> indices)
    {
        int rows = indices.Count;
        int columns = 0;
        foreach (int i in indices)
        {
            columns = Math.Max(columns, Sequences[i].Length);
        }

        var ids = new long[rows * columns];
        var mask = new long[rows * columns];
        var labels = new long[rows * columns];
        Array.Fill(ids, PadId);
        Array.Fill(labels, -100L);
        long tokens = 0;
        long targets = 0;
        for (int r = 0; r < rows; r++)
        {
            CompletionSequence s = Sequences[indices[r]];
            int[] source = s.Ids;
            int o = r * columns;
            for (int j = 0; j < source.Length; j++)
            {
                ids[o + j] = source[j];
                mask[o + j] = 1;
                if (j >= s.PromptLength)
                {
                    labels[o + j] = source[j];
                }
            }

            tokens += source.Length;
            targets += s.TargetTokens;
        }

        return new TrainingBatch(ids, rows, columns, mask, labels, tokens, targets);
    }

    /// <inheritdoc />
    internal override void CheckTokenIds(int vocabularySize)
    {
        for (int e = 0; e < Sequences.Count; e++)
        {
            int[] ids = Sequences[e].Ids;
            for (int j = 0; j < ids.Length; j++)
            {
                if (ids[j] >= vocabularySize)
                {
                    throw new ArgumentException(OutOfVocabulary(
                        string.Create(CultureInfo.InvariantCulture, $"example {e} (pair {Sequences[e].SourceIndex})"), ids[j], j, vocabularySize), "data");
                }
            }
        }

        if (PadId >= vocabularySize)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"data's padding id {PadId} (SftCompletionOptions.PadId, or EosId when null) is outside the model's vocabulary (ids 0 to {vocabularySize - 1}; vocab_size {vocabularySize})."), "data");
        }
    }
}
