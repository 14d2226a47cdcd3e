using System.Globalization;

namespace Mistral.Peft.Training;

/// <summary>
/// Fixed-length token blocks for causal-LM training (labels = input ids: the loss is on every token), with an account
/// of what packing left out. Made by <see cref="SftPacker"/>, or directly from blocks.
/// </summary>
/// <remarks>
/// A micro-batch of b blocks is a [b, <see cref="SequenceLength"/>] batch without padding or attention mask; each block
/// contributes <see cref="SequenceLength"/> − 1 target tokens (every token but the first is predicted).
/// </remarks>
public sealed class PackedDataset : TrainingDataset
{
    private readonly int[] _tokens;

    /// <summary>Creates a dataset from blocks of equal length.</summary>
    /// <param name="blocks">The blocks; each must have <paramref name="sequenceLength"/> non-negative ids.</param>
    /// <param name="sequenceLength">Tokens per block; at least 2.</param>
    /// <param name="textCount">How many texts the blocks were made from (for reporting); non-negative.</param>
    /// <param name="droppedTokens">How many tokens of the stream did not fill a final block; non-negative.</param>
    /// <exception cref="ArgumentException">A block has the wrong length or a negative id, or a count is invalid; the message names it.</exception>
    public PackedDataset(IEnumerable<IReadOnlyList<int>> blocks, int sequenceLength, int textCount = 0, long droppedTokens = 0)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        if (sequenceLength < 2)
        {
            throw new ArgumentException($"sequenceLength must be at least 2; got {sequenceLength}.", nameof(sequenceLength));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(textCount);
        ArgumentOutOfRangeException.ThrowIfNegative(droppedTokens);
        var tokens = new List<int>();
        int index = 0;
        foreach (var block in blocks)
        {
            if (block is null || block.Count != sequenceLength)
            {
                throw new ArgumentException($"blocks[{index}] must have {sequenceLength} ids; got {block?.Count.ToString(CultureInfo.InvariantCulture) ?? "null"}.", nameof(blocks));
            }

            for (int i = 0; i < block.Count; i++)
            {
                if (block[i] < 0)
                {
                    throw new ArgumentException($"blocks[{index}][{i}] is a negative token id ({block[i]}).", nameof(blocks));
                }

                tokens.Add(block[i]);
            }

            index++;
        }

        _tokens = [.. tokens];
        SequenceLength = sequenceLength;
        TextCount = textCount;
        DroppedTokens = droppedTokens;
        Blocks = BuildViews(_tokens, sequenceLength);
    }

    internal PackedDataset(int[] tokens, int sequenceLength, int textCount, long droppedTokens)
    {
        _tokens = tokens;
        SequenceLength = sequenceLength;
        TextCount = textCount;
        DroppedTokens = droppedTokens;
        Blocks = BuildViews(tokens, sequenceLength);
    }

    /// <summary>The blocks, each <see cref="SequenceLength"/> token ids (read-only views of one array).</summary>
    public IReadOnlyList<IReadOnlyList<int>> Blocks { get; }

    /// <summary>Number of blocks.</summary>
    public override int Count => Blocks.Count;

    /// <summary>Tokens per block.</summary>
    public int SequenceLength { get; }

    /// <summary>How many texts were packed.</summary>
    public int TextCount { get; }

    /// <summary>Tokens in the blocks (<see cref="Count"/> × <see cref="SequenceLength"/>).</summary>
    public long TokenCount => (long)Count * SequenceLength;

    /// <summary>Tokens at the end of the stream that did not fill a block and were left out (fewer than <see cref="SequenceLength"/>).</summary>
    public long DroppedTokens { get; }

    /// <summary>One line for logs, e.g. <c>"3 blocks of 512 tokens from 10 texts; 17 trailing tokens dropped"</c>.</summary>
    /// <returns>The description.</returns>
    public override string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Count} blocks of {SequenceLength} tokens from {TextCount} texts; {DroppedTokens} trailing tokens dropped");

    /// <inheritdoc />
    internal override TrainingBatch CreateBatch(IReadOnlyList<int> indices)
    {
        var ids = new long[indices.Count * SequenceLength];
        CopyBlocks(indices, ids);
        return new TrainingBatch(ids, indices.Count, SequenceLength, AttentionMask: null, Labels: null,
            Tokens: (long)indices.Count * SequenceLength, TargetTokens: (long)indices.Count * (SequenceLength - 1));
    }

    /// <inheritdoc />
    internal override void CheckTokenIds(int vocabularySize)
    {
        for (int i = 0; i < _tokens.Length; i++)
        {
            if (_tokens[i] >= vocabularySize)
            {
                throw new ArgumentException(OutOfVocabulary(
                    string.Create(CultureInfo.InvariantCulture, $"block {i / SequenceLength}"), _tokens[i], i % SequenceLength, vocabularySize), "data");
            }
        }
    }

    /// <summary>Copies blocks into <paramref name="destination"/> row after row (for building a batch tensor).</summary>
    internal void CopyBlocks(IReadOnlyList<int> blockIndices, long[] destination)
    {
        int o = 0;
        foreach (int b in blockIndices)
        {
            int start = b * SequenceLength;
            for (int i = 0; i < SequenceLength; i++)
            {
                destination[o++] = _tokens[start + i];
            }
        }
    }

    private static IReadOnlyList<IReadOnlyList<int>> BuildViews(int[] tokens, int sequenceLength)
    {
        int count = tokens.Length / sequenceLength;
        var views = new IReadOnlyList<int>[count];
        for (int i = 0; i < count; i++)
        {
            views[i] = new BlockView(tokens, i * sequenceLength, sequenceLength);
        }

        return views;
    }

    private sealed class BlockView(int[] tokens, int start, int count) : IReadOnlyList<int>
    {
        public int Count => count;

        public int this[int index] => (uint)index < (uint)count ? tokens[start + index] : throw new ArgumentOutOfRangeException(nameof(index));

        public IEnumerator<int> GetEnumerator()
        {
            for (int i = 0; i < count; i++)
            {
                yield return tokens[start + i];
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
