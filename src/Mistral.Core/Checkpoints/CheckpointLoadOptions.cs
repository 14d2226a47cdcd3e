namespace Mistral.Core.Checkpoints;

/// <summary>How a checkpoint is loaded into a model.</summary>
public sealed record CheckpointLoadOptions
{
    /// <summary>Fail (with one error listing everything) on missing or unexpected tensors. Shape mismatches always fail. Default true.</summary>
    public bool Strict { get; init; } = true;

    /// <summary>
    /// Standard deviation of the normal initialisation that a non-strict load gives missing linear and embedding weights;
    /// null means the model's <c>initializer_range</c> (<see cref="Configuration.MistralConfig.InitializerRange"/>) or 0.02.
    /// </summary>
    public double? InitializerRange { get; init; }

    /// <summary>Seed of the private generator that draws missing tensors' initial values (no process-wide generator is used).</summary>
    public ulong InitializationSeed { get; init; }

    /// <summary>Defaults: strict.</summary>
    public static CheckpointLoadOptions Default { get; } = new();
}
