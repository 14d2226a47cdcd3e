namespace Mistral.Core.Tokenization;

/// <summary>Which end of a too-long sequence loses tokens.</summary>
public enum TruncationSide
{
    /// <summary>Drops tokens from the end (keeps the beginning).</summary>
    Right,

    /// <summary>Drops tokens from the beginning (keeps the end, e.g. the most recent part of a prompt).</summary>
    Left,
}
