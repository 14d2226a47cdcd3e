namespace Mistral.Core.Checkpoints;

/// <summary>A checkpoint does not fit a model: lists every missing, unexpected and mis-shaped tensor at once.</summary>
public sealed class CheckpointMismatchException : IOException
{
    /// <summary>Creates the exception.</summary>
    public CheckpointMismatchException(string folder, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misShaped)
        : base(Format(folder, missing, unexpected, misShaped))
    {
        Folder = folder;
        Missing = missing;
        Unexpected = unexpected;
        MisShaped = misShaped;
    }

    /// <summary>Creates the exception with a note on why the tensors are a problem.</summary>
    public CheckpointMismatchException(string folder, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misShaped, string note)
        : base(Format(folder, missing, unexpected, misShaped)[..^1] + $" ({note}).")
    {
        Folder = folder;
        Missing = missing;
        Unexpected = unexpected;
        MisShaped = misShaped;
    }

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }

    /// <summary>Tensors the model has and the checkpoint lacks.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Tensors the checkpoint has and the model lacks.</summary>
    public IReadOnlyList<string> Unexpected { get; }

    /// <summary>Tensors whose shapes differ ("name: checkpoint [..] vs model [..]").</summary>
    public IReadOnlyList<string> MisShaped { get; }

    private static string Format(string folder, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misShaped)
    {
        var parts = new List<string>();
        if (missing.Count > 0)
        {
            parts.Add($"missing ({missing.Count}): {string.Join(", ", missing)}");
        }

        if (unexpected.Count > 0)
        {
            parts.Add($"unexpected ({unexpected.Count}): {string.Join(", ", unexpected)}");
        }

        if (misShaped.Count > 0)
        {
            parts.Add($"wrong shape ({misShaped.Count}): {string.Join("; ", misShaped)}");
        }

        return $"Checkpoint '{folder}' does not match the model: {string.Join(" | ", parts)}.";
    }
}
