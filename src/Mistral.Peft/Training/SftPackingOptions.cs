namespace Mistral.Peft.Training;

/// <summary>
/// How <see cref="SftPacker"/> packs tokenized texts into fixed-length blocks (TRL's <c>ConstantLengthDataset</c>, as the
/// study's <c>SFTTrainer(packing=True, max_seq_length=512)</c> used it). Defaults are the study's with Mistral's ids
/// (BOS 1, EOS 2). Call <see cref="Validate"/> (the packer does) to get an exception naming the first invalid option.
/// </summary>
public sealed record SftPackingOptions
{
    /// <summary>Tokens per block (the study's <c>max_seq_length</c>); at least 2, since the causal loss needs a next token. Default 512.</summary>
    public int SequenceLength { get; init; } = 512;

    /// <summary>Append <see cref="EosId"/> after each text (TRL's <c>append_concat_token</c>, the EOS between texts). Default true.</summary>
    public bool AppendEos { get; init; } = true;

    /// <summary>The id appended after each text when <see cref="AppendEos"/> is set. Default 2 (Mistral's <c>&lt;/s&gt;</c>).</summary>
    public int EosId { get; init; } = 2;

    /// <summary>
    /// Prepend <see cref="BosId"/> to each text. Default true: TRL tokenizes each text with the tokenizer's special tokens,
    /// and Hugging Face's Llama/Mistral tokenizer adds BOS to each, so every text in the stream starts with BOS. Set false
    /// when the ids passed in already carry their BOS.
    /// </summary>
    public bool PrependBos { get; init; } = true;

    /// <summary>The id prepended to each text when <see cref="PrependBos"/> is set. Default 1 (Mistral's <c>&lt;s&gt;</c>).</summary>
    public int BosId { get; init; } = 1;

    /// <summary>The study's packing: 512-token blocks, BOS before and EOS after each text.</summary>
    public static SftPackingOptions Study { get; } = new();

    /// <summary>Checks every option and throws naming the first invalid one.</summary>
    /// <returns>This instance, for chaining.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names it and what was expected.</exception>
    public SftPackingOptions Validate()
    {
        if (SequenceLength < 2)
        {
            throw new ArgumentException($"SftPackingOptions.SequenceLength must be at least 2; got {SequenceLength}.", nameof(SequenceLength));
        }

        if (AppendEos && EosId < 0)
        {
            throw new ArgumentException($"SftPackingOptions.EosId must be a non-negative token id when AppendEos is set; got {EosId}.", nameof(EosId));
        }

        if (PrependBos && BosId < 0)
        {
            throw new ArgumentException($"SftPackingOptions.BosId must be a non-negative token id when PrependBos is set; got {BosId}.", nameof(BosId));
        }

        return this;
    }
}
