using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mistral.Hub;

/// <summary>
/// Downloads Hugging Face Hub repositories (models and datasets) into the cache layout of Python's
/// <c>huggingface_hub</c>, so a snapshot downloaded by either side is found by the other.
/// </summary>
/// <remarks>
/// Protocol as <c>huggingface_hub.snapshot_download</c>: the file list and commit from
/// <c>GET {endpoint}/api/{models|datasets}/{repo}/revision/{revision}</c>; per file a <c>HEAD</c> on
/// <c>resolve/{commit}/{file}</c> (redirects not followed) for <c>X-Repo-Commit</c>, <c>X-Linked-Etag</c>/<c>ETag</c>,
/// <c>X-Linked-Size</c>/<c>Content-Length</c> and <c>Location</c>; then a ranged <c>GET</c> into
/// <c>blobs/&lt;etag&gt;.incomplete</c> (resumed by the next call), SHA-256 checked for LFS files, renamed to
/// <c>blobs/&lt;etag&gt;</c> and linked from <c>snapshots/&lt;commit&gt;/&lt;file&gt;</c>. The token goes only to the endpoint's host,
/// never to a redirect target (the CDN). Process-wide state is not read after construction nor changed.
/// </remarks>
public sealed class HubClient : IDisposable
{
    /// <summary>Globs selecting what a <c>MistralPipeline</c> needs from a model repository: config, safetensors weights and tokenizer.</summary>
    public static readonly IReadOnlyList<string> ModelFilePatterns =
        ["*.json", "*.safetensors", "tokenizer.model", "tokenizer.model.v*"];

    /// <summary>Globs skipped by <see cref="ResolveModelFolderAsync"/>: Mistral's duplicate <c>consolidated</c> weights and sub-folders' copies.</summary>
    public static readonly IReadOnlyList<string> ModelIgnorePatterns = ["consolidated*", "*/*"];

    private const int MaxRedirects = 5;
    private const long ProgressStepBytes = 1 << 20;

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly ILogger<HubClient> _logger;
    private readonly Uri _endpoint;

    /// <summary>Creates a client.</summary>
    /// <param name="options">Endpoint, cache, token, offline mode; <see cref="HubClientOptions.FromEnvironment"/> when null.</param>
    /// <param name="handler">The HTTP handler (it must not follow redirects itself); a <see cref="SocketsHttpHandler"/> when null.</param>
    /// <param name="logger">Logs transfers, resumes and retries.</param>
    public HubClient(HubClientOptions? options = null, HttpMessageHandler? handler = null, ILogger<HubClient>? logger = null)
    {
        Options = options ?? HubClientOptions.FromEnvironment();
        _endpoint = new Uri(Options.Endpoint.TrimEnd('/') + "/", UriKind.Absolute);
        _logger = logger ?? NullLogger<HubClient>.Instance;
        _ownsHttp = true;
        _http = new HttpClient(
            handler ?? new SocketsHttpHandler { AllowAutoRedirect = false, AutomaticDecompression = DecompressionMethods.None },
            disposeHandler: handler is null)
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("Mistral.Hub", "0.1"));
    }

    /// <summary>The options in use.</summary>
    public HubClientOptions Options { get; }

    /// <summary>
    /// Downloads the files of <paramref name="repoId"/> at a revision (those the patterns select) into the cache, or
    /// with <see cref="HubClientOptions.Offline"/> resolves the revision from the cache only.
    /// </summary>
    /// <param name="repoId">The repository id, e.g. <c>mistralai/Mistral-7B-v0.1</c>.</param>
    /// <param name="options">Revision, repository type, patterns and parallelism.</param>
    /// <param name="progress">Receives per-file progress.</param>
    /// <param name="cancellationToken">Cancels the transfers; partial files stay as <c>.incomplete</c> and are resumed later.</param>
    /// <returns>The snapshot folder, <c>{cache}/{models|datasets}--org--name/snapshots/{commit}</c>.</returns>
    /// <exception cref="HubException">401/403 (gated or private), 404 (repository, revision or file), a checksum mismatch, or offline with nothing cached.</exception>
    public async Task<string> DownloadAsync(
        string repoId,
        HubDownloadOptions? options = null,
        IProgress<HubDownloadProgress>? progress = null,
        CancellationToken cancellationToken = default) =>
        (await DownloadSnapshotAsync(repoId, options ?? new HubDownloadOptions(), progress, cancellationToken).ConfigureAwait(false)).Folder;

    /// <summary>
    /// Downloads the files an HF URI names (a file, a folder, a glob such as <c>data/train-*.parquet</c>, or the whole
    /// repository) into the cache, or with <see cref="HubClientOptions.Offline"/> finds them in the cached snapshot.
    /// </summary>
    /// <param name="uri">The URI, e.g. <c>HubUri.Parse("hf://datasets/rungalileo/20_Newsgroups_Fixed/data/train-*.parquet")</c>.</param>
    /// <param name="progress">Receives per-file progress.</param>
    /// <param name="cancellationToken">Cancels the transfers.</param>
    /// <returns>The local files (inside the snapshot folder), ordered by their path in the repository.</returns>
    /// <exception cref="HubException">No file matches (the message lists some that exist), or any error of <see cref="DownloadAsync"/>.</exception>
    public async Task<IReadOnlyList<string>> DownloadFilesAsync(
        HubUri uri,
        IProgress<HubDownloadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(uri);
        var options = new HubDownloadOptions { RepoType = uri.RepoType, Revision = uri.Revision, AllowPatterns = uri.AllowPatterns };
        Snapshot snapshot = await DownloadSnapshotAsync(uri.RepoId, options, progress, cancellationToken).ConfigureAwait(false);
        if (snapshot.Selected.Count == 0)
        {
            const int Shown = 20;
            string listed = string.Join(", ", snapshot.All.Order(StringComparer.Ordinal).Take(Shown)) + (snapshot.All.Count > Shown ? $", … ({snapshot.All.Count} files)" : "");
            throw new HubException(
                $"{uri}: no file of {uri.RepoId}@{uri.Revision} matches \"{uri.Path}\" ({(Options.Offline ? "in the cached snapshot" : "on the Hub")}: {(listed.Length > 0 ? listed : "no files")}).",
                uri.RepoId, uri.Revision, uri.Path);
        }

        return snapshot.Selected.Order(StringComparer.Ordinal).Select(f => Path.Combine(snapshot.Folder, f)).ToArray();
    }

    /// <summary>
    /// A local model folder for <paramref name="idOrFolder"/>: an existing folder is returned as is (full path);
    /// otherwise it is taken as a Hub model id and its config, safetensors and tokenizer files
    /// (<see cref="ModelFilePatterns"/>, minus <see cref="ModelIgnorePatterns"/>) are downloaded, and the snapshot folder returned.
    /// Pass the result to <c>MistralPipeline.FromPretrained</c>.
    /// </summary>
    /// <param name="idOrFolder">A folder, or a Hub id such as <c>mistralai/Mistral-7B-v0.1</c>.</param>
    /// <param name="revision">Branch, tag or commit hash for a Hub id.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    /// <returns>The local folder.</returns>
    public async Task<string> ResolveModelFolderAsync(
        string idOrFolder,
        string revision = "main",
        IProgress<HubDownloadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(idOrFolder);
        if (Directory.Exists(idOrFolder))
        {
            return Path.GetFullPath(idOrFolder);
        }

        if (!LooksLikeRepoId(idOrFolder))
        {
            throw new DirectoryNotFoundException($"\"{idOrFolder}\" is neither an existing folder nor a Hub repository id (org/name).");
        }

        return await DownloadAsync(
            idOrFolder,
            new HubDownloadOptions { Revision = revision, AllowPatterns = ModelFilePatterns, IgnorePatterns = ModelIgnorePatterns },
            progress,
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    /// <summary>
    /// Reads a model reference of the form <c>org/name</c> or <c>org/name@revision</c> (what <c>MistralPipeline.FromPretrained</c>
    /// and the Study CLI's <c>--model</c> accept besides folders). A single name without an organisation is not taken as a
    /// reference, since it is indistinguishable from a relative folder name.
    /// </summary>
    /// <param name="value">The text to read.</param>
    /// <param name="repoId">The repository id, when it is one.</param>
    /// <param name="revision">The revision after <c>@</c>, or <c>main</c>.</param>
    /// <returns>Whether <paramref name="value"/> is such a reference.</returns>
    public static bool TryParseModelReference(string value, out string repoId, out string revision)
    {
        ArgumentNullException.ThrowIfNull(value);
        int at = value.IndexOf('@', StringComparison.Ordinal);
        repoId = at < 0 ? value : value[..at];
        revision = at < 0 ? "main" : value[(at + 1)..];
        return IsNamespacedRepoId(repoId) && revision.Length > 0;
    }

    /// <summary>Whether <paramref name="s"/> is a repository id with a namespace (<c>org/name</c>), as HF URIs require.</summary>
    internal static bool IsNamespacedRepoId(string s) => s.Count(c => c == '/') == 1 && LooksLikeRepoId(s);

    private static bool LooksLikeRepoId(string s)
    {
        string[] parts = s.Split('/');
        return parts.Length is 1 or 2 && !Path.IsPathRooted(s) && !s.Contains('\\')
            && parts.All(p => p.Length > 0 && p[0] != '.' && p.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'));
    }

    /// <summary>Whether a snapshot file exists with its content (a symlink whose blob was deleted does not count).</summary>
    private static bool PointsToContent(string pointer)
    {
        var info = new FileInfo(pointer);
        return info.Exists && (info.LinkTarget is null || info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: true });
    }

    private static void ValidateRepoId(string repoId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(repoId);
        if (!LooksLikeRepoId(repoId))
        {
            throw new ArgumentException($"\"{repoId}\" is not a Hub repository id (name or org/name of letters, digits, '-', '_', '.').", nameof(repoId));
        }
    }

    private static void ValidateRevision(string repoId, string revision)
    {
        if (string.IsNullOrWhiteSpace(revision) || revision.Split('/').Any(s => s is "" or "." or ".."))
        {
            throw new HubException($"{repoId}: invalid revision \"{revision}\".", repoId, revision);
        }
    }

    private async Task<Snapshot> DownloadSnapshotAsync(string repoId, HubDownloadOptions options, IProgress<HubDownloadProgress>? progress, CancellationToken cancellationToken)
    {
        ValidateRepoId(repoId);
        ValidateRevision(repoId, options.Revision);
        if (options.MaxParallelFiles < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxParallelFiles, "MaxParallelFiles must be at least 1.");
        }

        if (Options.Offline)
        {
            return CachedSnapshot(FromCacheOrThrow(repoId, options, "HF_HUB_OFFLINE is set"), options);
        }

        RepoListing listing;
        try
        {
            listing = await ListAsync(repoId, options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            string? cached = HubCacheLayout.TryGetSnapshotFolder(Options.CacheDirectory, repoId, options.RepoType, options.Revision);
            if (cached is null)
            {
                throw new HubException(
                    $"{repoId}@{options.Revision}: the Hub at {_endpoint} could not be reached ({e.Message}) and the cache {Options.CacheDirectory} has no snapshot of this revision.",
                    repoId, options.Revision, inner: e);
            }

            _logger.LogWarning("{Repo}@{Revision}: the Hub could not be reached ({Error}); using the cached snapshot {Snapshot}.", repoId, options.Revision, e.Message, cached);
            return CachedSnapshot(cached, options);
        }

        string repoFolder = HubCacheLayout.RepoFolder(Options.CacheDirectory, repoId, options.RepoType);
        string snapshot = Path.Combine(repoFolder, "snapshots", listing.Commit);
        Directory.CreateDirectory(snapshot);
        string[] files = HubGlob.Filter(listing.Files, options.AllowPatterns, options.IgnorePatterns).ToArray();
        _logger.LogInformation("{Repo}@{Revision} ({Commit}): {Count} of {Total} files selected.", repoId, options.Revision, listing.Commit, files.Length, listing.Files.Count);

        var state = new CallState(repoId, options, listing.Commit, repoFolder, snapshot, files.Length, progress);
        await Parallel.ForEachAsync(
            files,
            new ParallelOptions { MaxDegreeOfParallelism = options.MaxParallelFiles, CancellationToken = cancellationToken },
            (file, ct) => new ValueTask(DownloadFileAsync(state, file, ct))).ConfigureAwait(false);

        if (!string.Equals(options.Revision, listing.Commit, StringComparison.Ordinal))
        {
            string refFile = Path.Combine(repoFolder, "refs", options.Revision);
            WriteAllTextAtomic(refFile, listing.Commit);
        }

        return new Snapshot(snapshot, files, listing.Files);
    }

    /// <summary>A snapshot found in the cache: its files are what the folder holds (symlinks whose blob is gone excluded).</summary>
    private static Snapshot CachedSnapshot(string folder, HubDownloadOptions options)
    {
        string[] all = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(PointsToContent)
            .Select(f => Path.GetRelativePath(folder, f).Replace('\\', '/'))
            .ToArray();
        return new Snapshot(folder, HubGlob.Filter(all, options.AllowPatterns, options.IgnorePatterns).ToArray(), all);
    }

    private string FromCacheOrThrow(string repoId, HubDownloadOptions options, string why) =>
        HubCacheLayout.TryGetSnapshotFolder(Options.CacheDirectory, repoId, options.RepoType, options.Revision)
        ?? throw new HubException(
            $"{repoId}@{options.Revision}: {why} and the cache has no snapshot of this revision " +
            $"(looked for {Path.Combine(HubCacheLayout.RepoFolder(Options.CacheDirectory, repoId, options.RepoType), HubCacheLayout.IsCommitHash(options.Revision) ? "snapshots" : "refs", options.Revision)}). " +
            "Download it once online (or with huggingface_hub into the same HF_HUB_CACHE), or unset HF_HUB_OFFLINE.",
            repoId, options.Revision);

    private async Task<RepoListing> ListAsync(string repoId, HubDownloadOptions options, CancellationToken ct)
    {
        string kind = options.RepoType == HubRepoType.Dataset ? "datasets" : "models";
        var uri = new Uri(_endpoint, $"api/{kind}/{repoId}/revision/{Uri.EscapeDataString(options.Revision)}");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(Options.RequestTimeout);
        HttpResponseMessage response;
        for (int hop = 0; ; hop++)
        {
            using HttpRequestMessage request = NewRequest(HttpMethod.Get, uri);
            response = await _http.SendAsync(request, timeout.Token).ConfigureAwait(false);
            if ((int)response.StatusCode is >= 300 and < 400 && response.Headers.Location is { } loc && hop < MaxRedirects)
            {
                uri = new Uri(uri, loc); // a renamed repository
                response.Dispose();
                continue;
            }

            break;
        }

        using HttpResponseMessage disposeResponse = response;
        if (!response.IsSuccessStatusCode)
        {
            throw StatusError(response, repoId, options.Revision, file: null, options.RepoType);
        }

        await using Stream body = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
        using JsonDocument doc = await JsonDocument.ParseAsync(body, cancellationToken: timeout.Token).ConfigureAwait(false);
        JsonElement root = doc.RootElement;
        string? sha = root.TryGetProperty("sha", out JsonElement s) ? s.GetString() : null;
        if (sha is null || !HubCacheLayout.IsCommitHash(sha))
        {
            throw new HubException($"{repoId}@{options.Revision}: the Hub's answer from {uri} has no commit hash (\"sha\").", repoId, options.Revision, statusCode: response.StatusCode);
        }

        var files = new List<string>();
        if (root.TryGetProperty("siblings", out JsonElement siblings) && siblings.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement sib in siblings.EnumerateArray())
            {
                if (sib.TryGetProperty("rfilename", out JsonElement f) && f.GetString() is { Length: > 0 } name)
                {
                    files.Add(name);
                }
            }
        }

        return new RepoListing(sha, files);
    }

    private async Task DownloadFileAsync(CallState st, string file, CancellationToken ct)
    {
        string pointer = Path.GetFullPath(Path.Combine(st.Snapshot, file));
        if (!pointer.StartsWith(Path.GetFullPath(st.Snapshot) + Path.DirectorySeparatorChar, StringComparison.Ordinal) || file.Contains('\\'))
        {
            throw new HubException($"{st.RepoId}@{st.Options.Revision}: the Hub listed an unsafe file name \"{file}\".", st.RepoId, st.Options.Revision, file);
        }

        if (PointsToContent(pointer))
        {
            using (var handle = File.OpenHandle(pointer))
            {
                st.FileDone(file, RandomAccess.GetLength(handle)); // the content's length: FileInfo.Length of a symlink is the link's own
            }

            return;
        }

        string prefix = st.Options.RepoType == HubRepoType.Dataset ? "datasets/" : "";
        string escaped = string.Join('/', file.Split('/').Select(Uri.EscapeDataString));
        var resolve = new Uri(_endpoint, $"{prefix}{st.RepoId}/resolve/{st.Commit}/{escaped}");
        FileMetadata meta = await HeadAsync(st, file, resolve, ct).ConfigureAwait(false);

        string blobs = Path.Combine(st.RepoFolder, "blobs");
        Directory.CreateDirectory(blobs);
        string blob = Path.Combine(blobs, meta.Etag);
        SemaphoreSlim gate = st.BlobLocks.GetOrAdd(meta.Etag, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            string lockPath = Path.Combine(Options.CacheDirectory, ".locks", Path.GetFileName(st.RepoFolder), meta.Etag + ".lock");
            await using FileStream? fileLock = File.Exists(blob) ? null : await AcquireLockAsync(lockPath, st, file, ct).ConfigureAwait(false);
            if (!File.Exists(blob))
            {
                for (int attempt = 0; ; attempt++)
                {
                    try
                    {
                        await TransferAsync(st, file, meta, blob, ct).ConfigureAwait(false);
                        break;
                    }
                    catch (Exception e) when (e is IOException or HttpRequestException && attempt < Options.MaxRetries && !ct.IsCancellationRequested)
                    {
                        _logger.LogWarning("{Repo}@{Revision}/{File}: transfer interrupted ({Error}); resuming (retry {Attempt} of {Max}).", st.RepoId, st.Options.Revision, file, e.Message, attempt + 1, Options.MaxRetries);
                    }
                }
            }
        }
        finally
        {
            gate.Release();
        }

        LinkAtomic(pointer, blob);
        st.FileDone(file, new FileInfo(blob).Length);
    }

    /// <summary>
    /// Takes <c>{cache}/.locks/{repo folder}/{etag}.lock</c> exclusively, as huggingface_hub's <c>filelock</c> does (an
    /// exclusive open is an advisory <c>flock</c> on Unix, so the two programs exclude each other).
    /// </summary>
    private async Task<FileStream> AcquireLockAsync(string lockPath, CallState st, string file, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException e) when (!ct.IsCancellationRequested)
            {
                if (attempt == 0)
                {
                    _logger.LogInformation("{Repo}/{File}: waiting for {Lock}, held by another download ({Error}).", st.RepoId, file, lockPath, e.Message);
                }

                await Task.Delay(TimeSpan.FromMilliseconds(100), ct).ConfigureAwait(false);
            }
        }
    }

    private async Task<FileMetadata> HeadAsync(CallState st, string file, Uri uri, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(Options.RequestTimeout);
        for (int hop = 0; ; hop++)
        {
            using HttpRequestMessage request = NewRequest(HttpMethod.Head, uri);
            using HttpResponseMessage response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
            int code = (int)response.StatusCode;
            Uri? location = response.Headers.Location is { } loc ? new Uri(uri, loc) : null;
            if (code is >= 300 and < 400 && response.Headers.Location is { IsAbsoluteUri: false } && hop < MaxRedirects)
            {
                uri = location!; // a relative redirect (renamed repository): follow, as huggingface_hub does
                continue;
            }

            if (code >= 400 || (code >= 300 && location is null))
            {
                throw StatusError(response, st.RepoId, st.Options.Revision, file, st.Options.RepoType);
            }

            string? etag = Header(response, "X-Linked-Etag") ?? response.Headers.ETag?.Tag ?? Header(response, "ETag");
            if (etag is null)
            {
                throw new HubException($"{st.RepoId}@{st.Options.Revision}/{file}: the Hub's HEAD {uri} answered {code} without an ETag; cannot place the file in the cache.", st.RepoId, st.Options.Revision, file, response.StatusCode);
            }

            etag = NormalizeEtag(etag);
            if (etag.Length == 0 || etag.Any(c => !char.IsAsciiLetterOrDigit(c) && c is not '-' and not '_'))
            {
                throw new HubException($"{st.RepoId}@{st.Options.Revision}/{file}: unusable ETag \"{etag}\" from {uri}.", st.RepoId, st.Options.Revision, file, response.StatusCode);
            }

            long? size = long.TryParse(Header(response, "X-Linked-Size"), out long ls) ? ls : response.Content.Headers.ContentLength;
            string? commit = Header(response, "X-Repo-Commit");
            if (commit is not null && !string.Equals(commit, st.Commit, StringComparison.Ordinal))
            {
                _logger.LogWarning("{Repo}/{File}: X-Repo-Commit {Got} differs from the listed commit {Commit}.", st.RepoId, file, commit, st.Commit);
            }

            return new FileMetadata(etag, size, code is >= 300 and < 400 ? location! : uri);
        }
    }

    private async Task TransferAsync(CallState st, string file, FileMetadata meta, string blob, CancellationToken ct)
    {
        string incomplete = blob + ".incomplete";
        long existing = File.Exists(incomplete) ? new FileInfo(incomplete).Length : 0;
        if (meta.Size is { } total && existing > total)
        {
            File.Delete(incomplete);
            existing = 0;
        }

        Uri uri = meta.DownloadUri;
        HttpResponseMessage response;
        for (int hop = 0; ; hop++)
        {
            using HttpRequestMessage request = NewRequest(HttpMethod.Get, uri);
            if (existing > 0)
            {
                request.Headers.Range = new RangeHeaderValue(existing, null);
            }

            using var headerTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            headerTimeout.CancelAfter(Options.RequestTimeout);
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, headerTimeout.Token).ConfigureAwait(false);
            int code = (int)response.StatusCode;
            if (code is >= 300 and < 400 && response.Headers.Location is { } loc && hop < MaxRedirects)
            {
                uri = new Uri(uri, loc);
                response.Dispose();
                continue;
            }

            break;
        }

        using (response)
        {
            if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && existing > 0 && existing == meta.Size)
            {
                // Everything is already there; fall through to verification with an empty body.
            }
            else if (!response.IsSuccessStatusCode)
            {
                throw StatusError(response, st.RepoId, st.Options.Revision, file, st.Options.RepoType);
            }

            if (existing > 0 && response.StatusCode == HttpStatusCode.PartialContent && response.Content.Headers.ContentRange?.From != existing)
            {
                throw new IOException($"{uri}: asked for bytes {existing}- but got the range {response.Content.Headers.ContentRange}.");
            }

            bool append = existing > 0 && response.StatusCode is HttpStatusCode.PartialContent or HttpStatusCode.RequestedRangeNotSatisfiable;
            if (existing > 0)
            {
                _logger.LogInformation("{Repo}/{File}: {Mode} at byte {Offset}.", st.RepoId, file, append ? "resuming" : "server ignored Range; restarting", existing);
            }

            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            await using (var output = new FileStream(incomplete, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1 << 16, useAsync: true))
            {
                byte[] buffer = new byte[1 << 16];
                long written = 0;
                if (append)
                {
                    int n;
                    while ((n = await output.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                    {
                        sha.AppendData(buffer, 0, n);
                        written += n;
                    }
                }
                else
                {
                    output.SetLength(0);
                }

                if (response.StatusCode != HttpStatusCode.RequestedRangeNotSatisfiable)
                {
                    await using Stream body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                    long sinceReport = 0;
                    int n;
                    while ((n = await body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                    {
                        await output.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                        sha.AppendData(buffer, 0, n);
                        written += n;
                        sinceReport += n;
                        st.Transferred(n);
                        if (sinceReport >= ProgressStepBytes)
                        {
                            sinceReport = 0;
                            st.Report(file, written, meta.Size);
                        }
                    }
                }

                output.Flush(flushToDisk: true);
                if (meta.Size is { } expected && written != expected)
                {
                    throw new IOException($"{st.RepoId}@{st.Options.Revision}/{file}: got {written} of {expected} bytes from {uri}.");
                }
            }

            string hex = Convert.ToHexStringLower(sha.GetHashAndReset());
            if (meta.Etag.Length == 64 && meta.Etag.All(char.IsAsciiHexDigitLower) && !string.Equals(hex, meta.Etag, StringComparison.Ordinal))
            {
                File.Delete(incomplete);
                throw new HubException(
                    $"{st.RepoId}@{st.Options.Revision}/{file}: SHA-256 mismatch (expected {meta.Etag} from the Hub's ETag, got {hex}); the download from {uri} was discarded.",
                    st.RepoId, st.Options.Revision, file, response.StatusCode);
            }

            File.Move(incomplete, blob, overwrite: true);
        }
    }

    private HttpRequestMessage NewRequest(HttpMethod method, Uri uri)
    {
        var request = new HttpRequestMessage(method, uri);
        if (Options.Token is { Length: > 0 } token && IsSameAuthority(uri, _endpoint))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        request.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue("identity"));
        return request;
    }

    private HubException StatusError(HttpResponseMessage response, string repoId, string revision, string? file, HubRepoType type)
    {
        int code = (int)response.StatusCode;
        string errorCode = Header(response, "X-Error-Code") ?? "";
        string serverMessage = Header(response, "X-Error-Message") is { } m ? $" The Hub says: {m}" : "";
        string what = type == HubRepoType.Dataset ? "dataset" : "model";
        string where = file is null ? $"{repoId}@{revision}" : $"{repoId}@{revision}/{file}";
        string url = response.RequestMessage?.RequestUri?.ToString() ?? _endpoint.ToString();
        string text = (code, errorCode) switch
        {
            (_, "GatedRepo") or (401 or 403, _) =>
                $"{where}: HTTP {code} from {url}: the {what} repository is gated or private, or does not exist. " +
                (Options.Token is null
                    ? "Accept its terms on the Hub if it is gated, then set HF_TOKEN (or HubClientOptions.Token) to an access token."
                    : "The token in HF_TOKEN was refused: check that it can read this repository and that its terms are accepted."),
            (_, "RevisionNotFound") => $"{where}: HTTP {code} from {url}: revision \"{revision}\" not found in the {what} repository {repoId}.",
            (_, "EntryNotFound") => $"{where}: HTTP {code} from {url}: file \"{file}\" not found at revision \"{revision}\".",
            (_, "RepoNotFound") => $"{where}: HTTP {code} from {url}: {what} repository {repoId} not found (private repositories need HF_TOKEN).",
            (404, _) when file is null => $"{where}: HTTP 404 from {url}: {what} repository {repoId} or its revision \"{revision}\" not found.",
            (404, _) => $"{where}: HTTP 404 from {url}: file \"{file}\" not found at revision \"{revision}\".",
            _ => $"{where}: HTTP {code} ({response.ReasonPhrase}) from {url}.",
        };
        return new HubException(text + serverMessage, repoId, revision, file, response.StatusCode);
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out IEnumerable<string>? v) || response.Content.Headers.TryGetValues(name, out v)
            ? v.FirstOrDefault()
            : null;

    private static string NormalizeEtag(string etag)
    {
        etag = etag.Trim();
        if (etag.StartsWith("W/", StringComparison.Ordinal))
        {
            etag = etag[2..];
        }

        return etag.Trim('"');
    }

    private static bool IsSameAuthority(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    /// <summary>Replaces <paramref name="pointer"/> by a relative symlink to <paramref name="blob"/> (a copy where symlinks are not allowed).</summary>
    private void LinkAtomic(string pointer, string blob)
    {
        string dir = Path.GetDirectoryName(pointer)!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $".{Path.GetFileName(pointer)}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.CreateSymbolicLink(temp, Path.GetRelativePath(dir, blob));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            _logger.LogWarning("Symlinks are not available here ({Error}); copying {Blob} to {Pointer}.", e.Message, blob, pointer);
            File.Copy(blob, temp, overwrite: true);
        }

        File.Move(temp, pointer, overwrite: true);
    }

    private static void WriteAllTextAtomic(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = path + $".{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
    }

    private sealed record RepoListing(string Commit, IReadOnlyList<string> Files);

    /// <summary>A snapshot folder, the files selected by the patterns and all the files known (listed by the Hub, or in the cached folder).</summary>
    private sealed record Snapshot(string Folder, IReadOnlyList<string> Selected, IReadOnlyList<string> All);

    private sealed record FileMetadata(string Etag, long? Size, Uri DownloadUri);

    private sealed class CallState(
        string repoId, HubDownloadOptions options, string commit, string repoFolder, string snapshot, int totalFiles,
        IProgress<HubDownloadProgress>? progress)
    {
        private int _filesCompleted;
        private long _bytes;

        public string RepoId { get; } = repoId;

        public HubDownloadOptions Options { get; } = options;

        public string Commit { get; } = commit;

        public string RepoFolder { get; } = repoFolder;

        public string Snapshot { get; } = snapshot;

        public ConcurrentDictionary<string, SemaphoreSlim> BlobLocks { get; } = new(StringComparer.Ordinal);

        public void Transferred(int n) => Interlocked.Add(ref _bytes, n);

        public void Report(string file, long bytes, long? total) =>
            progress?.Report(new HubDownloadProgress(file, bytes, total, Volatile.Read(ref _filesCompleted), totalFiles, Interlocked.Read(ref _bytes)));

        public void FileDone(string file, long size)
        {
            int done = Interlocked.Increment(ref _filesCompleted);
            progress?.Report(new HubDownloadProgress(file, size, size, done, totalFiles, Interlocked.Read(ref _bytes)));
        }
    }
}
