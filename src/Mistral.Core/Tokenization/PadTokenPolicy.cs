namespace Mistral.Core.Tokenization;

/// <summary>
/// Which id pads a batch. Mistral-7B's tokenizer has no pad token; the study (like most fine-tuning scripts)
/// sets pad = eos, and this choice must be made explicitly.
/// </summary>
public enum PadTokenPolicy
{
    /// <summary>No pad token: padding a batch of unequal rows is an error (the model's own setting).</summary>
    None,

    /// <summary>Pad with the end-of-sentence id (<c>&lt;/s&gt;</c>, 2 for Mistral): the study's convention.</summary>
    EndOfSentence,

    /// <summary>Pad with <see cref="TokenizerOptions.CustomPadId"/>.</summary>
    Custom,
}
