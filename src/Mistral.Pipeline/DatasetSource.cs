using Mistral.Eval.Data;
using Mistral.Hub;

namespace Mistral.Pipeline;

/// <summary>
/// Reads examples from a local file (JSONL, CSV or Parquet) or from a Hub dataset's files named by an HF URI such as
/// <c>hf://datasets/rungalileo/20_Newsgroups_Fixed/data/train-*.parquet</c> (see <see cref="HubUri"/>), which are
/// downloaded into the huggingface_hub cache first and read in order as one split (a split's Parquet shards).
/// </summary>
public static class DatasetSource
{
    /// <summary>Whether <paramref name="source"/> is meant as a Hub location (it starts with <c>hf://</c>).</summary>
    /// <param name="source">A file path or an HF URI.</param>
    /// <returns>True for an HF URI (valid or not).</returns>
    public static bool IsHubUri(string source) => HubUri.HasScheme(source);

    /// <summary>The local files of a source: the file itself, or the Hub files the URI names (downloaded when needed).</summary>
    /// <param name="source">A file path, or an HF URI naming a file, a folder or a glob.</param>
    /// <param name="hub">How the Hub is reached; <see cref="HubClientOptions.FromEnvironment"/> when null.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    /// <returns>The local files, in repository path order for a URI.</returns>
    /// <exception cref="FileNotFoundException">A local file does not exist.</exception>
    /// <exception cref="FormatException">The text starts with <c>hf://</c> but is not a model or dataset HF URI.</exception>
    /// <exception cref="HubException">The repository, revision or a matching file is not found (or not reachable and not cached).</exception>
    public static async Task<IReadOnlyList<string>> ResolveAsync(
        string source, HubClientOptions? hub = null, IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        if (!IsHubUri(source))
        {
            return File.Exists(source) ? [source] : throw new FileNotFoundException($"'{source}' does not exist ({Path.GetFullPath(source)}).", source);
        }

        HubUri uri = HubUri.Parse(source);
        using var client = new HubClient(hub);
        return await client.DownloadFilesAsync(uri, progress, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads a source's examples through <paramref name="mapping"/>: a local file as <see cref="DatasetReader.ReadAsync"/>
    /// does, or every file an HF URI names, concatenated in repository path order (row counts, skip counts and details
    /// summed; the result's <see cref="DatasetReadResult.FilePath"/> is the URI).
    /// </summary>
    /// <param name="source">A file path, or an HF URI such as <c>hf://datasets/org/name/data/train-*.parquet</c>.</param>
    /// <param name="mapping">Which columns hold input and target.</param>
    /// <param name="options">Bad-row handling; <see cref="ReadOptions.Strict"/> when null.</param>
    /// <param name="hub">How the Hub is reached; <see cref="HubClientOptions.FromEnvironment"/> when null.</param>
    /// <param name="cancellationToken">Cancels the download and the read.</param>
    /// <returns>The examples and skip counts.</returns>
    /// <exception cref="FileNotFoundException">A local file does not exist.</exception>
    /// <exception cref="FormatException">The text starts with <c>hf://</c> but is not a model or dataset HF URI.</exception>
    /// <exception cref="HubException">The Hub could not provide the files.</exception>
    /// <exception cref="DatasetException">A file is malformed (as <see cref="DatasetReader"/> reports it).</exception>
    public static async Task<DatasetReadResult> ReadAsync(
        string source, ColumnMapping mapping, ReadOptions? options = null, HubClientOptions? hub = null, CancellationToken cancellationToken = default) =>
        (await LoadAsync(source, mapping, options, hub, cancellationToken).ConfigureAwait(false)).Read;

    /// <summary><see cref="ReadAsync"/>, also returning the local files read (for data identities).</summary>
    internal static async Task<(DatasetReadResult Read, IReadOnlyList<string> Files)> LoadAsync(
        string source, ColumnMapping mapping, ReadOptions? options, HubClientOptions? hub, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(mapping);
        IReadOnlyList<string> files = await ResolveAsync(source, hub, progress: null, cancellationToken).ConfigureAwait(false);
        var reader = new DatasetReader();
        if (!IsHubUri(source))
        {
            return (await reader.ReadAsync(source, mapping, options, cancellationToken).ConfigureAwait(false), files);
        }

        var parts = new List<DatasetReadResult>(files.Count);
        foreach (string file in files)
        {
            parts.Add(await reader.ReadAsync(file, mapping, options, cancellationToken).ConfigureAwait(false));
        }

        var skips = new Dictionary<SkipReason, long>();
        foreach (var (reason, count) in parts.SelectMany(p => p.SkipCounts))
        {
            skips[reason] = skips.GetValueOrDefault(reason) + count;
        }

        var read = new DatasetReadResult(
            source,
            parts.SelectMany(p => p.Examples).ToArray(),
            parts.Sum(p => p.RowsSeen),
            skips,
            parts.SelectMany(p => p.SkippedRows).Take((options ?? ReadOptions.Strict).MaxSkippedDetails).ToArray());
        return (read, files);
    }
}
