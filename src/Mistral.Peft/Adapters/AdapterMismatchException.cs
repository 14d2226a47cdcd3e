namespace Mistral.Peft.Adapters;

/// <summary>An adapter's tensors do not fit the model: missing or unexpected keys, or shapes that differ (all listed).</summary>
public sealed class AdapterMismatchException : IOException
{
    /// <summary>Creates the exception; the message lists every problem.</summary>
    /// <param name="path">The adapter weights file.</param>
    /// <param name="missing">Keys the model needs that the file lacks.</param>
    /// <param name="unexpected">Keys in the file that the model does not have.</param>
    /// <param name="misShaped">One line per key whose shapes differ: key, the file's shape and the model's.</param>
    public AdapterMismatchException(string path, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misShaped)
        : base(BuildMessage(path, missing, unexpected, misShaped))
    {
        Path = path;
        Missing = missing;
        Unexpected = unexpected;
        MisShaped = misShaped;
    }

    /// <summary>The adapter weights file.</summary>
    public string Path { get; }

    /// <summary>Keys the model needs that the file lacks.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Keys in the file that the model does not have.</summary>
    public IReadOnlyList<string> Unexpected { get; }

    /// <summary>Keys whose shapes differ, each as <c>key: adapter [..] vs model [..]</c>.</summary>
    public IReadOnlyList<string> MisShaped { get; }

    private static string BuildMessage(string path, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misShaped)
    {
        var parts = new List<string>();
        if (misShaped.Count > 0)
        {
            parts.Add($"{misShaped.Count} shape mismatch(es) (was the adapter made for another base model?): {string.Join("; ", misShaped)}");
        }

        if (missing.Count > 0)
        {
            parts.Add($"{missing.Count} missing key(s): {string.Join(", ", missing)}");
        }

        if (unexpected.Count > 0)
        {
            parts.Add($"{unexpected.Count} unexpected key(s): {string.Join(", ", unexpected)}");
        }

        return $"Adapter '{path}' does not fit the model: {string.Join(". ", parts)}.";
    }
}
