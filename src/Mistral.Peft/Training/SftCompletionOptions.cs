namespace Mistral.Peft.Training;

/// <summary>
/// How <see cref="SftCompletionBuilder"/> frames prompt/target pairs for completion-only training: each example is
/// <c>BOS + prompt + target + EOS</c>, at most <see cref="MaxLength"/> tokens, with the loss on the target (and EOS) only.
/// Defaults use Mistral's ids (BOS 1, EOS 2, padding = EOS as the study's tokenizer set it). Call <see cref="Validate"/>
/// (the builder does) to get an exception naming the first invalid option.
/// </summary>
public sealed record SftCompletionOptions
{
    /// <summary>
    /// Most tokens per example, BOS and EOS included; at least 2. Longer examples keep their first <see cref="MaxLength"/>
    /// tokens (TRL's <c>truncation_mode="keep_start"</c>: the target's end and the EOS are cut first); each truncation is
    /// counted (<see cref="CompletionDataset.TruncatedCount"/>), and an example left with no target token is dropped and
    /// listed (<see cref="CompletionDataset.DroppedSourceIndices"/>). Default 512 (the study's <c>max_seq_length</c>).
    /// </summary>
    public int MaxLength { get; init; } = 512;

    /// <summary>Prepend <see cref="BosId"/> (part of the prompt: not in the loss). Default true (Mistral's tokenizer adds BOS).</summary>
    public bool PrependBos { get; init; } = true;

    /// <summary>The id prepended when <see cref="PrependBos"/> is set. Default 1 (Mistral's <c>&lt;s&gt;</c>).</summary>
    public int BosId { get; init; } = 1;

    /// <summary>Append <see cref="EosId"/> after the target (part of the target: in the loss, so the model learns to stop). Default true.</summary>
    public bool AppendEos { get; init; } = true;

    /// <summary>The id appended when <see cref="AppendEos"/> is set. Default 2 (Mistral's <c>&lt;/s&gt;</c>).</summary>
    public int EosId { get; init; } = 2;

    /// <summary>
    /// The id written into padding positions (never attended to, never in the loss, but it must be a valid id); null for
    /// <see cref="EosId"/> (the study's <c>pad = eos</c>). Default null.
    /// </summary>
    public int? PadId { get; init; }

    /// <summary>The padding id in effect: <see cref="PadId"/>, or <see cref="EosId"/> when it is null.</summary>
    public int EffectivePadId => PadId ?? EosId;

    /// <summary>Checks every option and throws naming the first invalid one.</summary>
    /// <returns>This instance, for chaining.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names it and what was expected.</exception>
    public SftCompletionOptions Validate()
    {
        if (MaxLength < 2)
        {
            throw new ArgumentException($"SftCompletionOptions.MaxLength must be at least 2 (a prompt token and a target token); got {MaxLength}.", nameof(MaxLength));
        }

        if (PrependBos && BosId < 0)
        {
            throw new ArgumentException($"SftCompletionOptions.BosId must be a non-negative token id when PrependBos is set; got {BosId}.", nameof(BosId));
        }

        if (AppendEos && EosId < 0)
        {
            throw new ArgumentException($"SftCompletionOptions.EosId must be a non-negative token id when AppendEos is set; got {EosId}.", nameof(EosId));
        }

        if (EffectivePadId < 0)
        {
            throw new ArgumentException($"SftCompletionOptions.PadId must be a non-negative token id (null uses EosId); got {EffectivePadId}.", nameof(PadId));
        }

        return this;
    }
}
