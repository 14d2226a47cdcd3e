namespace Mistral.Hub;

/// <summary>The kind of Hub repository.</summary>
public enum HubRepoType
{
    /// <summary>A model repository (<c>models--org--name</c> in the cache).</summary>
    Model,

    /// <summary>A dataset repository (<c>datasets--org--name</c> in the cache).</summary>
    Dataset,
}

/// <summary>
/// Where and how <see cref="HubClient"/> talks to the Hub. <see cref="FromEnvironment"/> reads the same variables as
/// Python's <c>huggingface_hub</c>; tests build the record directly so no process state is read or changed.
/// </summary>
public sealed record HubClientOptions
{
    /// <summary>The default endpoint, used when <c>HF_ENDPOINT</c> is not set.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>The Hub's base address (<c>HF_ENDPOINT</c>).</summary>
    public string Endpoint { get; init; } = DefaultEndpoint;

    /// <summary>The cache folder holding <c>models--…</c> and <c>datasets--…</c> (<c>HF_HUB_CACHE</c>, else <c>HF_HOME/hub</c>, else <c>~/.cache/huggingface/hub</c>).</summary>
    public required string CacheDirectory { get; init; }

    /// <summary>The access token sent as <c>Authorization: Bearer</c> to the endpoint's host (<c>HF_TOKEN</c>); null for anonymous access.</summary>
    public string? Token { get; init; }

    /// <summary>Resolve from the cache only, never touching the network (<c>HF_HUB_OFFLINE</c>).</summary>
    public bool Offline { get; init; }

    /// <summary>Timeout of one HTTP request's headers (metadata calls); body transfers are bounded by cancellation only.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How many times a failed or interrupted file transfer is resumed within one call before giving up.</summary>
    public int MaxRetries { get; init; } = 2;

    /// <summary>
    /// Reads <c>HF_ENDPOINT</c>, <c>HF_HUB_CACHE</c>, <c>HF_HOME</c>, <c>HF_TOKEN</c> (else the token file
    /// <c>HF_HOME/token</c> that <c>huggingface-cli login</c> writes) and <c>HF_HUB_OFFLINE</c>.
    /// </summary>
    /// <param name="getVariable">Reads one variable; <see cref="Environment.GetEnvironmentVariable(string)"/> when null.</param>
    /// <returns>The options.</returns>
    public static HubClientOptions FromEnvironment(Func<string, string?>? getVariable = null)
    {
        getVariable ??= Environment.GetEnvironmentVariable;
        string? Get(string name) => getVariable(name) is { Length: > 0 } v ? v : null;

        string home = Get("HF_HOME") ?? Path.Combine(
            Get("XDG_CACHE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
            "huggingface");
        string cache = Get("HF_HUB_CACHE") ?? Get("HUGGINGFACE_HUB_CACHE") ?? Path.Combine(home, "hub");
        string? token = Get("HF_TOKEN") ?? Get("HUGGING_FACE_HUB_TOKEN");
        if (token is null)
        {
            string tokenFile = Get("HF_TOKEN_PATH") ?? Path.Combine(home, "token");
            if (File.Exists(tokenFile))
            {
                token = File.ReadAllText(tokenFile).Trim() is { Length: > 0 } t ? t : null;
            }
        }

        string? offline = Get("HF_HUB_OFFLINE");
        return new HubClientOptions
        {
            Endpoint = (Get("HF_ENDPOINT") ?? DefaultEndpoint).TrimEnd('/'),
            CacheDirectory = ExpandHome(cache),
            Token = token,
            Offline = offline is not null && offline.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE",
        };
    }

    private static string ExpandHome(string path) =>
        path.StartsWith('~')
            ? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) + path[1..]
            : path;
}

/// <summary>What <see cref="HubClient.DownloadAsync"/> fetches.</summary>
public sealed record HubDownloadOptions
{
    /// <summary>A branch, tag or commit hash.</summary>
    public string Revision { get; init; } = "main";

    /// <summary>Model or dataset repository.</summary>
    public HubRepoType RepoType { get; init; } = HubRepoType.Model;

    /// <summary>fnmatch-style globs (<c>*</c> also crosses <c>/</c>; a pattern ending in <c>/</c> means the whole folder); a file is kept if it matches one. Null keeps all.</summary>
    public IReadOnlyList<string>? AllowPatterns { get; init; }

    /// <summary>fnmatch-style globs; a file matching one is skipped.</summary>
    public IReadOnlyList<string>? IgnorePatterns { get; init; }

    /// <summary>How many files are transferred at once.</summary>
    public int MaxParallelFiles { get; init; } = 4;
}

/// <summary>Progress of a download, reported per chunk (throttled) and per finished file.</summary>
/// <param name="File">The file this report is about (path inside the repository).</param>
/// <param name="FileBytes">Bytes of that file now on disk.</param>
/// <param name="FileTotalBytes">That file's size, when the Hub told it.</param>
/// <param name="FilesCompleted">Files finished so far (cached ones included).</param>
/// <param name="TotalFiles">Files selected by the patterns.</param>
/// <param name="BytesTransferred">Bytes received over the network during this call, all files together.</param>
public sealed record HubDownloadProgress(
    string File, long FileBytes, long? FileTotalBytes, int FilesCompleted, int TotalFiles, long BytesTransferred);
