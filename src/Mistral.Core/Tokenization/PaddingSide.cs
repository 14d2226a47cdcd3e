namespace Mistral.Core.Tokenization;

/// <summary>Which end of a sequence receives pad tokens in a batch.</summary>
public enum PaddingSide
{
    /// <summary>Pads after the tokens (the study's setting for training).</summary>
    Right,

    /// <summary>Pads before the tokens (needed for batched generation, so every row ends at its last real token).</summary>
    Left,
}
