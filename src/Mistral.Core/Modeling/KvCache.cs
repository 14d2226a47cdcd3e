using TorchSharp;
using Mistral.Core.Configuration;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Key/value cache for incremental decoding, allocated once for a whole generation and sized for the key/value heads
/// (not the expanded query heads). When the sequence can outgrow the sliding window W it becomes a rolling buffer of
/// W slots: the token at sequence index p lives in slot p mod W, and RoPE keeps using absolute positions.
/// </summary>
/// <remarks>The cache also tracks which slots hold real tokens (padding is never attended) and each row's next position id.</remarks>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] keys;
    private readonly Tensor[] values;
    private bool disposed;

    /// <summary>Allocates a cache for <paramref name="batchSize"/> rows of at most <paramref name="maxLength"/> tokens (prompt + new).</summary>
    public KvCache(MistralConfig config, int batchSize, int maxLength, ScalarType dtype, Device device)
        : this(config, batchSize, maxLength, dtype, device, allowRolling: true)
    {
    }

    /// <summary>
    /// Allocates a cache for <paramref name="batchSize"/> rows of at most <paramref name="maxLength"/> tokens; with
    /// <paramref name="allowRolling"/> false it keeps every token (no rolling buffer, the sliding window still applies
    /// through the attention mask), which is what <see cref="Truncate"/> needs.
    /// </summary>
    public KvCache(MistralConfig config, int batchSize, int maxLength, ScalarType dtype, Device device, bool allowRolling)
        : this(config, batchSize, maxLength, dtype, device, allowRolling, initialCapacity: null)
    {
    }

    /// <summary>
    /// With <paramref name="initialCapacity"/> below <paramref name="maxLength"/>, a cache that is not rolling starts with that
    /// many slots and grows (doubling, up to <paramref name="maxLength"/>) as tokens arrive, so asking for many new tokens
    /// does not allocate for all of them up front. Growing allocates in the current grad/inference mode, so use such a
    /// cache within one mode (as <see cref="Generation.TokenGenerator"/> does under <c>inference_mode</c>).
    /// </summary>
    internal KvCache(MistralConfig config, int batchSize, int maxLength, ScalarType dtype, Device device, bool allowRolling, int? initialCapacity)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        IsRolling = allowRolling && config.SlidingWindow is int w && maxLength > w;
        Capacity = IsRolling ? config.SlidingWindow!.Value : Math.Clamp(initialCapacity ?? maxLength, 1, maxLength);
        MaxLength = maxLength;
        BatchSize = batchSize;
        SlidingWindow = config.SlidingWindow;
        keys = new Tensor[config.NumHiddenLayers];
        values = new Tensor[config.NumHiddenLayers];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = zeros([batchSize, config.NumKeyValueHeads, Capacity, config.HeadDim], dtype, device);
            values[i] = zeros([batchSize, config.NumKeyValueHeads, Capacity, config.HeadDim], dtype, device);
        }

        SlotIndex = full([Capacity], -1L, ScalarType.Int64, device);
        SlotValid = zeros([batchSize, Capacity], ScalarType.Bool, device);
        NextPosition = zeros([batchSize], ScalarType.Int64, device);
    }

    private KvCache(KvCache source, int times)
    {
        IsRolling = source.IsRolling;
        Capacity = source.Capacity;
        MaxLength = source.MaxLength;
        BatchSize = source.BatchSize * times;
        SlidingWindow = source.SlidingWindow;
        Length = source.Length;
        var made = new List<Tensor>();
        try
        {
            keys = source.keys.Select(k => Track(k.repeat(times, 1, 1, 1))).ToArray();
            values = source.values.Select(v => Track(v.repeat(times, 1, 1, 1))).ToArray();
            SlotIndex = Track(source.SlotIndex.clone());
            SlotValid = Track(source.SlotValid.repeat(times, 1));
            NextPosition = Track(source.NextPosition.repeat(times));
        }
        catch
        {
            // Out of memory part-way: free the copies already made.
            foreach (var t in made)
            {
                t.Dispose();
            }

            throw;
        }

        Tensor Track(Tensor t)
        {
            made.Add(t);
            return t;
        }
    }

    /// <summary>
    /// A new cache holding <paramref name="times"/> copies of every row, in order (row r of copy c is row
    /// c × <see cref="BatchSize"/> + r): one computed prompt continued by several sequences in one batch.
    /// </summary>
    /// <param name="times">Copies; at least 1.</param>
    /// <returns>The new cache (dispose it); this one is unchanged.</returns>
    public KvCache RepeatRows(int times)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(times);
        return new KvCache(this, times);
    }

    /// <summary>Bytes of one row's keys and values over all layers (what <see cref="RepeatRows"/> copies per row).</summary>
    public long BytesPerRow => keys.Sum(k => k.NumberOfElements * k.ElementSize) * 2 / BatchSize;

    /// <summary>Whether the cache is a rolling buffer of W slots.</summary>
    public bool IsRolling { get; }

    /// <summary>Number of slots per layer now allocated (a growing cache's rises towards <see cref="MaxLength"/>).</summary>
    public int Capacity { get; private set; }

    /// <summary>Largest total sequence length the cache accepts.</summary>
    public int MaxLength { get; }

    /// <summary>Rows in the batch.</summary>
    public int BatchSize { get; }

    /// <summary>The window W, or null.</summary>
    public int? SlidingWindow { get; }

    /// <summary>Tokens (including padding) written so far: the sequence index of the next token.</summary>
    public long Length { get; private set; }

    /// <summary>int64 [capacity]: the sequence index held by each slot, −1 when empty.</summary>
    internal Tensor SlotIndex { get; private set; }

    /// <summary>bool [batch, capacity]: whether each slot holds a real (non-padding) token.</summary>
    internal Tensor SlotValid { get; private set; }

    /// <summary>int64 [batch]: the position id the next real token of each row gets.</summary>
    internal Tensor NextPosition { get; private set; }

    /// <summary>Keys of one layer [batch, kv_heads, capacity, head_dim].</summary>
    internal Tensor Keys(int layer) => keys[layer];

    /// <summary>Values of one layer [batch, kv_heads, capacity, head_dim].</summary>
    internal Tensor Values(int layer) => values[layer];

    /// <summary>Starts a step of <paramref name="newTokens"/> tokens; returns how the layers use the cache.</summary>
    internal KvCacheStep BeginStep(int newTokens, Tensor newValid)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (Length + newTokens > MaxLength)
        {
            throw new InvalidOperationException(
                $"The KV cache holds at most {MaxLength} tokens; {Length} are cached and {newTokens} more were given.");
        }

        if (!IsRolling && Length + newTokens > Capacity)
        {
            Grow((int)Math.Min(MaxLength, Math.Max(Length + newTokens, 2L * Capacity)));
        }

        Device device = SlotIndex.device;
        Tensor queryIndex = arange(Length, Length + newTokens, 1, ScalarType.Int64, device);
        bool writeFirst = !IsRolling || newTokens == 1;
        if (writeFirst)
        {
            Tensor slots = IsRolling ? queryIndex.remainder(Capacity) : queryIndex;
            SlotIndex.index_copy_(0, slots, queryIndex);
            SlotValid.index_copy_(1, slots, newValid.to_type(ScalarType.Bool));
            int used = IsRolling ? Capacity : (int)(Length + newTokens);
            Tensor keyIndex = SlotIndex.narrow(0, 0, used);
            Tensor keyValid = SlotValid.narrow(1, 0, used);
            return new KvCacheStep(queryIndex, keyIndex, keyValid, slots, WriteFirst: true, Used: used, KeepFrom: 0);
        }
        else
        {
            int keep = Math.Min(newTokens, Capacity);
            int keepFrom = newTokens - keep;
            Tensor keyIndex = cat([SlotIndex, queryIndex], 0);
            Tensor keyValid = cat([SlotValid, newValid.to_type(ScalarType.Bool)], 1);
            Tensor kept = queryIndex.narrow(0, keepFrom, keep);
            Tensor slots = kept.remainder(Capacity);
            return new KvCacheStep(queryIndex, keyIndex, keyValid, slots, WriteFirst: false, Used: Capacity, KeepFrom: keepFrom);
        }
    }

    private void Grow(int capacity)
    {
        using var scope = NewDisposeScope();
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = Widen(keys[i], 2, capacity, 0);
            values[i] = Widen(values[i], 2, capacity, 0);
        }

        SlotIndex = Widen(SlotIndex, 0, capacity, -1);
        SlotValid = Widen(SlotValid, 1, capacity, 0);
        Capacity = capacity;
    }

    // A copy of t with dimension dim widened to size (the new part filled with fill); t is disposed.
    private static Tensor Widen(Tensor t, int dim, int size, long fill)
    {
        long[] shape = t.shape;
        long old = shape[dim];
        shape[dim] = size;
        Tensor wider = full(shape, fill, t.dtype, t.device).DetachFromDisposeScope();
        wider.narrow(dim, 0, old).copy_(t);
        t.Dispose();
        return wider;
    }

    /// <summary>Finishes a step: records slot bookkeeping for the concatenating path and advances the length.</summary>
    internal void EndStep(KvCacheStep step, Tensor newValid, Tensor newPositions)
    {
        if (!step.WriteFirst)
        {
            int keep = (int)step.Slots.size(0);
            SlotIndex.index_copy_(0, step.Slots, step.QueryIndex.narrow(0, step.KeepFrom, keep));
            SlotValid.index_copy_(1, step.Slots, newValid.to_type(ScalarType.Bool).narrow(1, step.KeepFrom, keep));
        }

        using Tensor last = newPositions.narrow(1, newPositions.size(1) - 1, 1).squeeze(1);
        using Tensor anyValid = newValid.to_type(ScalarType.Bool).any(1);
        using Tensor next = where(anyValid, last + 1, NextPosition);
        NextPosition.copy_(next);
        Length += step.QueryIndex.size(0);
    }

    /// <summary>
    /// Forgets the tokens at sequence index <paramref name="length"/> and after, keeping the first
    /// <paramref name="length"/> (e.g. a shared prompt scored against several continuations). Only a cache that is not a
    /// rolling buffer can be cut back, since a rolling buffer has overwritten older slots.
    /// </summary>
    /// <param name="length">Tokens to keep, in [0, <see cref="Length"/>].</param>
    /// <exception cref="InvalidOperationException">The cache is a rolling buffer.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or above <see cref="Length"/>.</exception>
    public void Truncate(long length)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (IsRolling)
        {
            throw new InvalidOperationException(
                $"A rolling KV cache (capacity {Capacity} < max length {MaxLength}) cannot be truncated; allocate it with allowRolling: false.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        if (length == Length)
        {
            return;
        }

        using var scope = NewDisposeScope();
        SlotIndex.narrow(0, length, Capacity - length).fill_(-1);
        SlotValid.narrow(1, length, Capacity - length).fill_(false);
        // Positions are cumsum(mask) − 1, so a row's next position is the count of its real tokens kept.
        NextPosition.copy_(SlotValid.narrow(1, 0, length).to_type(ScalarType.Int64).sum(1));
        Length = length;
    }

    /// <summary>Forgets every cached token (the buffers are reused).</summary>
    public void Reset()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        SlotIndex.fill_(-1);
        SlotValid.fill_(false);
        NextPosition.fill_(0);
        Length = 0;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        foreach (Tensor t in keys)
        {
            t.Dispose();
        }

        foreach (Tensor t in values)
        {
            t.Dispose();
        }

        SlotIndex.Dispose();
        SlotValid.Dispose();
        NextPosition.Dispose();
    }
}
