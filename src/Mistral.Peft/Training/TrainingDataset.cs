namespace Mistral.Peft.Training;

/// <summary>
/// Training sequences that <see cref="LoraTrainer"/> and <see cref="CausalLMTrainer"/> turn into micro-batches. Two kinds exist:
/// <see cref="PackedDataset"/> (fixed-length blocks cut from one token stream, loss on every token: the study's packing)
/// and <see cref="CompletionDataset"/> (one prompt/target example per sequence, loss on the target tokens only,
/// right-padded micro-batches).
/// </summary>
/// <remarks>
/// Every sequence has at least one token whose prediction counts in the loss (a "target token"), so every micro-batch
/// has a defined loss. The trainer weights each micro-batch by its share of the optimizer step's target tokens.
/// </remarks>
public abstract class TrainingDataset
{
    private protected TrainingDataset()
    {
    }

    /// <summary>Number of sequences (blocks or examples): what the per-epoch shuffle orders and micro-batches group.</summary>
    public abstract int Count { get; }

    /// <summary>One line for logs describing the sequences and what building them left out or cut.</summary>
    /// <returns>The description.</returns>
    public abstract string Describe();

    /// <inheritdoc />
    public override string ToString() => Describe();

    /// <summary>Builds the host-side arrays of one micro-batch from sequence indices (each in [0, <see cref="Count"/>)).</summary>
    internal abstract TrainingBatch CreateBatch(IReadOnlyList<int> indices);

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> (parameter <c>data</c>) naming the first sequence, position and id of a
    /// token id that is not below <paramref name="vocabularySize"/> (the model's embedding rows).
    /// </summary>
    internal abstract void CheckTokenIds(int vocabularySize);

    /// <summary>The message of an out-of-vocabulary token id.</summary>
    internal static string OutOfVocabulary(string where, int id, int position, int vocabularySize) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"data {where} holds token id {id} at position {position}, outside the model's vocabulary (ids 0 to {vocabularySize - 1}; vocab_size {vocabularySize}). Was the data tokenized with another model's tokenizer?");
}
