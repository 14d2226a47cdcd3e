namespace Mistral.Hub;

/// <summary>
/// Paths of Python <c>huggingface_hub</c>'s cache: <c>{cache}/{models|datasets}--org--name/{blobs/&lt;etag&gt;,
/// refs/&lt;revision&gt;, snapshots/&lt;commit&gt;/&lt;file&gt;}</c>, snapshot files being relative symlinks into <c>blobs</c>.
/// </summary>
public static class HubCacheLayout
{
    /// <summary>The repository's folder name in the cache, e.g. <c>models--mistralai--Mistral-7B-v0.1</c>.</summary>
    /// <param name="repoId">The repository id (<c>org/name</c> or <c>name</c>).</param>
    /// <param name="repoType">Model or dataset.</param>
    /// <returns>The folder name.</returns>
    public static string RepoFolderName(string repoId, HubRepoType repoType) =>
        $"{(repoType == HubRepoType.Dataset ? "datasets" : "models")}--{repoId.Replace("/", "--", StringComparison.Ordinal)}";

    /// <summary>The repository's folder in <paramref name="cacheDirectory"/>.</summary>
    /// <param name="cacheDirectory">The hub cache (<see cref="HubClientOptions.CacheDirectory"/>).</param>
    /// <param name="repoId">The repository id.</param>
    /// <param name="repoType">Model or dataset.</param>
    /// <returns>The folder's path.</returns>
    public static string RepoFolder(string cacheDirectory, string repoId, HubRepoType repoType) =>
        Path.Combine(cacheDirectory, RepoFolderName(repoId, repoType));

    /// <summary>Whether <paramref name="revision"/> is a full commit hash (40 lowercase hex digits).</summary>
    /// <param name="revision">A revision.</param>
    /// <returns>True for a commit hash.</returns>
    public static bool IsCommitHash(string revision) =>
        revision.Length == 40 && revision.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');

    /// <summary>
    /// The cached snapshot folder of <paramref name="revision"/> (a commit hash, or a branch/tag through
    /// <c>refs/</c>), or null when the cache does not have it.
    /// </summary>
    /// <param name="cacheDirectory">The hub cache.</param>
    /// <param name="repoId">The repository id.</param>
    /// <param name="repoType">Model or dataset.</param>
    /// <param name="revision">Branch, tag or commit hash.</param>
    /// <returns>The snapshot folder, or null.</returns>
    public static string? TryGetSnapshotFolder(string cacheDirectory, string repoId, HubRepoType repoType, string revision)
    {
        string repo = RepoFolder(cacheDirectory, repoId, repoType);
        string commit = revision;
        if (!IsCommitHash(revision))
        {
            string refFile = Path.Combine(repo, "refs", revision);
            if (!File.Exists(refFile))
            {
                return null;
            }

            commit = File.ReadAllText(refFile).Trim();
            if (!IsCommitHash(commit))
            {
                return null;
            }
        }

        string snapshot = Path.Combine(repo, "snapshots", commit);
        return Directory.Exists(snapshot) ? snapshot : null;
    }
}
