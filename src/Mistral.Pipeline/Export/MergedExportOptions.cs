using static TorchSharp.torch;

namespace Mistral.Pipeline;

/// <summary>How <see cref="LoadedPipeline.SaveMerged"/> writes a merged checkpoint.</summary>
public sealed record MergedExportOptions
{
    /// <summary>The dtype of the written weights (16 or 32 bits); default bfloat16, Mistral's own.</summary>
    public ScalarType DType { get; init; } = ScalarType.BFloat16;

    /// <summary>Largest shard in bytes; default 5 GB (transformers' <c>max_shard_size="5GB"</c>). One shard is written as <c>model.safetensors</c>.</summary>
    public long MaxShardBytes { get; init; } = 5_000_000_000;

    /// <summary>Replace the destination folder if it exists and is not empty. Default false (an error).</summary>
    public bool Overwrite { get; init; }

    /// <summary>Checks the options; throws naming the field.</summary>
    /// <returns>This instance.</returns>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public MergedExportOptions Validate()
    {
        if (DType is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32))
        {
            throw new ArgumentException($"MergedExportOptions.DType must be BFloat16, Float16 or Float32; got {DType}.", nameof(DType));
        }

        if (MaxShardBytes < 1)
        {
            throw new ArgumentException($"MergedExportOptions.MaxShardBytes must be positive; got {MaxShardBytes}.", nameof(MaxShardBytes));
        }

        return this;
    }
}
