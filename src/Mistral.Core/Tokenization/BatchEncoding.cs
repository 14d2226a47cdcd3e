namespace Mistral.Core.Tokenization;

/// <summary>
/// A padded batch: every row of <see cref="InputIds"/> and <see cref="AttentionMask"/> has
/// <see cref="SequenceLength"/> entries; the mask is 1 on real tokens and 0 on padding.
/// </summary>
public sealed class BatchEncoding
{
    private readonly int[][] _ids;
    private readonly int[][] _mask;

    internal BatchEncoding(int[][] ids, int[][] mask, int[] lengths, int sequenceLength, PaddingSide side, int padId)
    {
        _ids = ids;
        _mask = mask;
        Lengths = lengths;
        SequenceLength = sequenceLength;
        PaddingSide = side;
        PadId = padId;
    }

    /// <summary>The padded token ids, one row per input text.</summary>
    public IReadOnlyList<IReadOnlyList<int>> InputIds => _ids;

    /// <summary>1 for a real token, 0 for a pad, aligned with <see cref="InputIds"/>.</summary>
    public IReadOnlyList<IReadOnlyList<int>> AttentionMask => _mask;

    /// <summary>The number of real (non-pad) tokens of each row.</summary>
    public IReadOnlyList<int> Lengths { get; }

    /// <summary>The number of rows.</summary>
    public int BatchSize => _ids.Length;

    /// <summary>The padded length of every row.</summary>
    public int SequenceLength { get; }

    /// <summary>Where the padding was put.</summary>
    public PaddingSide PaddingSide { get; }

    /// <summary>The id used for padding (-1 when no row needed padding and no pad token was configured).</summary>
    public int PadId { get; }

    /// <summary>The ids as one row-major array of shape [BatchSize, SequenceLength] (ready for a tensor).</summary>
    public long[] ToInputIdsArray() => Flatten(_ids);

    /// <summary>The attention mask as one row-major array of shape [BatchSize, SequenceLength].</summary>
    public long[] ToAttentionMaskArray() => Flatten(_mask);

    private long[] Flatten(int[][] rows)
    {
        var flat = new long[rows.Length * SequenceLength];
        for (int r = 0; r < rows.Length; r++)
        {
            for (int c = 0; c < SequenceLength; c++)
            {
                flat[(r * SequenceLength) + c] = rows[r][c];
            }
        }

        return flat;
    }
}
