namespace Mistral.Core.Tokenization;

/// <summary>How long the rows of a padded batch are.</summary>
public enum PaddingStrategy
{
    /// <summary>Every row is padded to the longest row of the batch.</summary>
    Longest,

    /// <summary>Every row is padded to <see cref="PaddingOptions.MaxLength"/>.</summary>
    MaxLength,
}
