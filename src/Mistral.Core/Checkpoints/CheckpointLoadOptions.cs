namespace Mistral.Core.Checkpoints;

/// <summary>How a checkpoint is loaded into a model.</summary>
public sealed record CheckpointLoadOptions
{
    /// <summary>Fail (with one error listing everything) on missing or unexpected tensors. Shape mismatches always fail. Default true.</summary>
    public bool Strict { get; init; } = true;

    /// <summary>Defaults: strict.</summary>
    public static CheckpointLoadOptions Default { get; } = new();
}
