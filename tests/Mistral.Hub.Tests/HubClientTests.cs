using System.Collections.Concurrent;
using System.Net;
using System.Text;

namespace Mistral.Hub.Tests;

public sealed class HubClientTests : IDisposable
{
    private const string Token = "hf_test_token";
    private readonly string _cache = Path.Combine(Path.GetTempPath(), "mistral-hub-tests", Guid.NewGuid().ToString("N"));
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));

    private static readonly FakeFile Config = new("config.json", Encoding.UTF8.GetBytes("{\"model_type\":\"mistral\"}"), Lfs: false);
    private static readonly FakeFile Weights = new("model.safetensors", LoopbackHub.RandomBytes(300_000, 1), Lfs: true);
    private static readonly FakeFile Tokenizer = new("tokenizer/tokenizer.model", LoopbackHub.RandomBytes(5_000, 2), Lfs: true);
    private static readonly FakeFile Readme = new("README.md", Encoding.UTF8.GetBytes("# model"), Lfs: false);
    private static readonly FakeFile Consolidated = new("consolidated.safetensors", LoopbackHub.RandomBytes(1_000, 3), Lfs: true);

    public void Dispose()
    {
        _timeout.Dispose();
        if (Directory.Exists(_cache))
        {
            Directory.Delete(_cache, recursive: true);
        }
    }

    private static FakeRepo Model(string commit, bool gated = false) =>
        new("models", "org/tiny-model", commit, [Config, Weights, Tokenizer, Readme, Consolidated]) { Gated = gated };

    private HubClient Client(LoopbackHub hub, bool offline = false, string? token = Token, int retries = 2) => new(new HubClientOptions
    {
        Endpoint = hub.Endpoint,
        CacheDirectory = _cache,
        Token = token,
        Offline = offline,
        MaxRetries = retries,
        RequestTimeout = TimeSpan.FromSeconds(10),
    });

    private static void CopyPreservingLinks(string from, string to)
    {
        foreach (string dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories).Prepend(from))
        {
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        }

        foreach (string file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            if (new FileInfo(file).LinkTarget is { } link)
            {
                File.CreateSymbolicLink(target, link);
            }
            else
            {
                File.Copy(file, target, overwrite: true);
            }
        }
    }

    private static string[] Tree(string root) =>
        Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(root, p).Replace('\\', '/'))
            .Order(StringComparer.Ordinal)
            .ToArray();

    [Fact]
    public async Task Download_writes_the_huggingface_hub_cache_layout_exactly()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        using HubClient client = Client(hub);

        string snapshot = await client.DownloadAsync("org/tiny-model", new HubDownloadOptions(), null, _timeout.Token);

        string repo = Path.Combine(_cache, "models--org--tiny-model");
        snapshot.Should().Be(Path.Combine(repo, "snapshots", commit));
        File.ReadAllText(Path.Combine(repo, "refs", "main")).Should().Be(commit);
        FakeFile[] all = [Config, Weights, Tokenizer, Readme, Consolidated];
        string[] expected =
        [
            "blobs", .. all.Select(f => "blobs/" + f.Etag),
            "refs", "refs/main",
            "snapshots", $"snapshots/{commit}", $"snapshots/{commit}/tokenizer",
            .. all.Select(f => $"snapshots/{commit}/{f.Path}"),
        ];
        Tree(repo).Should().Equal(expected.Order(StringComparer.Ordinal));
        // For tools/hub/interop_check.py: MISTRAL_HUB_INTEROP_OUT=dir keeps a copy of this cache (symlinks preserved).
        if (Environment.GetEnvironmentVariable("MISTRAL_HUB_INTEROP_OUT") is { Length: > 0 } keep)
        {
            CopyPreservingLinks(_cache, keep);
        }

        foreach (FakeFile f in all)
        {
            string pointer = Path.Combine(snapshot, f.Path);
            File.ReadAllBytes(pointer).Should().Equal(f.Content);
            if (!OperatingSystem.IsWindows())
            {
                string up = string.Concat(Enumerable.Repeat("../", 2 + f.Path.Count(c => c == '/')));
                new FileInfo(pointer).LinkTarget.Should().Be($"{up}blobs/{f.Etag}");
            }
        }

        // LFS content came from the second host name through the 302, without the token; the Hub got the token.
        SeenRequest[] cdn = hub.Requests.Where(r => r.Server == "cdn").ToArray();
        cdn.Select(r => r.Path.Split('?')[0]).Should().BeEquivalentTo(all.Where(f => f.Lfs).Select(f => "/blob/" + f.Sha256));
        cdn.Should().OnlyContain(r => r.Method == "GET" && r.Headers["Host"].StartsWith("localhost:") && !r.Headers.ContainsKey("Authorization"));
        hub.Requests.Where(r => r.Server == "hub").Should().OnlyContain(r => r.Headers["Authorization"] == "Bearer " + Token);
        hub.Requests.Should().Contain(r => r.Method == "GET" && r.Path == "/api/models/org/tiny-model/revision/main");
        hub.Requests.Where(r => r.Method == "HEAD").Select(r => r.Path).Should().BeEquivalentTo(
            all.Select(f => $"/org/tiny-model/resolve/{commit}/{f.Path}"));
    }

    [Fact]
    public async Task A_second_call_reuses_the_cache_without_transfers()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        using HubClient client = Client(hub);
        string first = await client.DownloadAsync("org/tiny-model", cancellationToken: _timeout.Token);
        int before = hub.Requests.Count;
        var reports = new ConcurrentBag<HubDownloadProgress>();

        string second = await client.DownloadAsync("org/tiny-model", null, new SyncProgress<HubDownloadProgress>(reports.Add), _timeout.Token);

        second.Should().Be(first);
        hub.Requests.Skip(before).Select(r => $"{r.Method} {r.Path}").Should().Equal("GET /api/models/org/tiny-model/revision/main");
        reports.Single(p => p.File == Weights.Path).FileBytes.Should().Be(Weights.Content.Length, "a cached file's size is its content's, not its symlink's");
    }

    [Fact]
    public async Task Dataset_with_allow_and_ignore_patterns()
    {
        string commit = LoopbackHub.NewCommit();
        FakeFile train = new("data/train-00000-of-00001.parquet", LoopbackHub.RandomBytes(2_000, 4), Lfs: true);
        FakeFile test = new("data/test-00000-of-00001.parquet", LoopbackHub.RandomBytes(1_000, 5), Lfs: true);
        FakeFile attributes = new(".gitattributes", Encoding.UTF8.GetBytes("*.parquet filter=lfs"), Lfs: false);
        await using var hub = new LoopbackHub(new FakeRepo("datasets", "org/data", commit, [train, test, attributes, Readme]));
        using HubClient client = Client(hub);

        string snapshot = await client.DownloadAsync(
            "org/data",
            new HubDownloadOptions { RepoType = HubRepoType.Dataset, AllowPatterns = ["data/", "*.md"], IgnorePatterns = ["*test*"] },
            null,
            _timeout.Token);

        snapshot.Should().Be(Path.Combine(_cache, "datasets--org--data", "snapshots", commit));
        Tree(snapshot).Should().Equal("README.md", "data", "data/train-00000-of-00001.parquet");
        File.ReadAllBytes(Path.Combine(snapshot, train.Path)).Should().Equal(train.Content);
        hub.Requests.Should().Contain(r => r.Path == "/api/datasets/org/data/revision/main");
        hub.Requests.Should().Contain(r => r.Method == "HEAD" && r.Path == $"/datasets/org/data/resolve/{commit}/{train.Path}");
    }

    [Theory]
    [InlineData("a/b/config.json", "*.json", true)]
    [InlineData("config.json", "*.json", true)]
    [InlineData("model-00001.safetensors", "model-0000?.safetensors", true)]
    [InlineData("model-00001.safetensors", "model-[!0]*", false)]
    [InlineData("model-10001.safetensors", "model-[!0]*", true)]
    [InlineData("data/x/y.parquet", "data/", true)]
    [InlineData("datax/y.parquet", "data/", false)]
    [InlineData("a.json.bak", "*.json", false)]
    [InlineData("x+y(1).txt", "x+y(1).*", true)]
    public void Patterns_follow_fnmatch(string path, string pattern, bool match) =>
        HubGlob.IsMatch(path, pattern).Should().Be(match);

    [Fact]
    public async Task Gated_repository_without_token_is_a_clear_401()
    {
        await using var hub = new LoopbackHub(Model(LoopbackHub.NewCommit(), gated: true)) { AcceptedToken = Token };
        using HubClient anonymous = Client(hub, token: null);

        HubException e = (await anonymous.Invoking(c => c.DownloadAsync("org/tiny-model", cancellationToken: _timeout.Token))
            .Should().ThrowAsync<HubException>()).Which;
        e.StatusCode.Should().Be(HttpStatusCode.Unauthorized);
        e.RepoId.Should().Be("org/tiny-model");
        e.Message.Should().Contain("org/tiny-model").And.Contain("401").And.Contain("gated").And.Contain("HF_TOKEN");
        Directory.Exists(Path.Combine(_cache, "models--org--tiny-model")).Should().BeFalse();

        using HubClient withToken = Client(hub);
        string snapshot = await withToken.DownloadAsync("org/tiny-model", cancellationToken: _timeout.Token);
        File.ReadAllBytes(Path.Combine(snapshot, Weights.Path)).Should().Equal(Weights.Content);
    }

    [Fact]
    public async Task Missing_revision_and_missing_file_are_named()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit) with { Missing = ["README.md"] });
        using HubClient client = Client(hub);

        HubException rev = (await client.Invoking(c => c.DownloadAsync("org/tiny-model", new HubDownloadOptions { Revision = "v9" }, null, _timeout.Token))
            .Should().ThrowAsync<HubException>()).Which;
        rev.StatusCode.Should().Be(HttpStatusCode.NotFound);
        rev.Message.Should().Contain("revision \"v9\"").And.Contain("org/tiny-model");

        HubException file = (await client.Invoking(c => c.DownloadAsync("org/tiny-model", cancellationToken: _timeout.Token))
            .Should().ThrowAsync<HubException>()).Which;
        file.StatusCode.Should().Be(HttpStatusCode.NotFound);
        file.File.Should().Be("README.md");
        file.Message.Should().Contain("file \"README.md\" not found");

        HubException repo = (await client.Invoking(c => c.DownloadAsync("org/other", cancellationToken: _timeout.Token))
            .Should().ThrowAsync<HubException>()).Which;
        repo.Message.Should().Contain("org/other").And.Contain("not found");
    }

    [Fact]
    public async Task An_interrupted_transfer_is_resumed_by_the_next_call_with_a_range()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        hub.InterruptOnce[Weights.Sha256] = 100_000;
        using HubClient noRetry = Client(hub, retries: 0);
        var options = new HubDownloadOptions { AllowPatterns = [Weights.Path] };

        await noRetry.Invoking(c => c.DownloadAsync("org/tiny-model", options, null, _timeout.Token)).Should().ThrowAsync<Exception>();

        string blobs = Path.Combine(_cache, "models--org--tiny-model", "blobs");
        string incomplete = Path.Combine(blobs, Weights.Sha256 + ".incomplete");
        long partial = new FileInfo(incomplete).Length;
        partial.Should().BeInRange(1, 100_000);
        File.Exists(Path.Combine(blobs, Weights.Sha256)).Should().BeFalse();
        File.Exists(Path.Combine(_cache, "models--org--tiny-model", "snapshots", commit, Weights.Path)).Should().BeFalse();
        Directory.Exists(Path.Combine(_cache, "models--org--tiny-model", "refs")).Should().BeFalse();

        string snapshot = await noRetry.DownloadAsync("org/tiny-model", options, null, _timeout.Token);

        File.ReadAllBytes(Path.Combine(snapshot, Weights.Path)).Should().Equal(Weights.Content);
        File.Exists(incomplete).Should().BeFalse();
        hub.Requests.Where(r => r.Server == "cdn").Select(r => r.Headers.GetValueOrDefault("Range"))
            .Should().Equal(null, $"bytes={partial}-");
    }

    [Fact]
    public async Task An_interrupted_transfer_is_retried_within_the_call()
    {
        await using var hub = new LoopbackHub(Model(LoopbackHub.NewCommit()));
        hub.InterruptOnce[Weights.Sha256] = 50_000;
        using HubClient client = Client(hub, retries: 1);

        string snapshot = await client.DownloadAsync("org/tiny-model", new HubDownloadOptions { AllowPatterns = ["*.safetensors"] }, null, _timeout.Token);

        File.ReadAllBytes(Path.Combine(snapshot, Weights.Path)).Should().Equal(Weights.Content);
        hub.Requests.Where(r => r.Server == "cdn" && r.Path.Contains(Weights.Sha256)).Select(r => r.Headers.GetValueOrDefault("Range"))
            .Last().Should().StartWith("bytes=").And.NotBe("bytes=0-");
    }

    [Fact]
    public async Task A_corrupted_body_fails_the_sha256_check_and_leaves_no_blob()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        hub.Corrupt[Weights.Sha256] = true;
        using HubClient client = Client(hub);

        HubException e = (await client.Invoking(c => c.DownloadAsync("org/tiny-model", new HubDownloadOptions { AllowPatterns = [Weights.Path] }, null, _timeout.Token))
            .Should().ThrowAsync<HubException>()).Which;

        e.Message.Should().Contain("SHA-256 mismatch").And.Contain(Weights.Sha256).And.Contain("model.safetensors");
        e.File.Should().Be(Weights.Path);
        string repo = Path.Combine(_cache, "models--org--tiny-model");
        Directory.EnumerateFiles(Path.Combine(repo, "blobs")).Should().BeEmpty();
        Directory.EnumerateFileSystemEntries(Path.Combine(repo, "snapshots", commit)).Should().BeEmpty();
    }

    [Fact]
    public async Task Offline_mode_resolves_from_the_cache_only()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        using (HubClient online = Client(hub))
        {
            await online.DownloadAsync("org/tiny-model", cancellationToken: _timeout.Token);
        }

        int before = hub.Requests.Count;
        using HubClient offline = Client(hub, offline: true);

        string byBranch = await offline.DownloadAsync("org/tiny-model", cancellationToken: _timeout.Token);
        string byCommit = await offline.DownloadAsync("org/tiny-model", new HubDownloadOptions { Revision = commit }, null, _timeout.Token);

        byBranch.Should().Be(Path.Combine(_cache, "models--org--tiny-model", "snapshots", commit)).And.Be(byCommit);
        File.ReadAllBytes(Path.Combine(byBranch, Config.Path)).Should().Equal(Config.Content);
        hub.Requests.Count.Should().Be(before);

        HubException e = (await offline.Invoking(c => c.DownloadAsync("org/absent", cancellationToken: _timeout.Token))
            .Should().ThrowAsync<HubException>()).Which;
        e.Message.Should().Contain("HF_HUB_OFFLINE").And.Contain("org/absent").And.Contain("refs");
        e.StatusCode.Should().BeNull();
    }

    [Fact]
    public async Task Parallel_files_are_bounded_and_progress_ends_complete()
    {
        FakeFile[] files = Enumerable.Range(0, 6).Select(i => new FakeFile($"shard-{i}.safetensors", LoopbackHub.RandomBytes(10_000, 10 + i), Lfs: true)).ToArray();
        await using var hub = new LoopbackHub(new FakeRepo("models", "org/shards", LoopbackHub.NewCommit(), files)) { CdnDelayMs = 150 };
        using HubClient client = Client(hub);
        var reports = new List<HubDownloadProgress>();
        var progress = new SyncProgress<HubDownloadProgress>(p =>
        {
            lock (reports)
            {
                reports.Add(p);
            }
        });

        await client.DownloadAsync("org/shards", new HubDownloadOptions { MaxParallelFiles = 2 }, progress, _timeout.Token);

        hub.MaxCdnConcurrency.Should().BeInRange(1, 2);
        reports.Max(r => r.FilesCompleted).Should().Be(6);
        reports.Should().OnlyContain(r => r.TotalFiles == 6);
        reports.Max(r => r.BytesTransferred).Should().Be(60_000);
    }

    [Fact]
    public async Task ResolveModelFolder_returns_folders_as_is_and_downloads_model_files_for_ids()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        using HubClient client = Client(hub);
        Directory.CreateDirectory(_cache);

        (await client.ResolveModelFolderAsync(_cache, cancellationToken: _timeout.Token)).Should().Be(Path.GetFullPath(_cache));
        hub.Requests.Should().BeEmpty();

        string folder = await client.ResolveModelFolderAsync("org/tiny-model", cancellationToken: _timeout.Token);

        folder.Should().Be(Path.Combine(_cache, "models--org--tiny-model", "snapshots", commit));
        Tree(folder).Should().Equal("config.json", "model.safetensors");
        await client.Invoking(c => c.ResolveModelFolderAsync("/no/such/folder/anywhere", cancellationToken: _timeout.Token))
            .Should().ThrowAsync<DirectoryNotFoundException>();
    }

    [Fact]
    public async Task A_renamed_repository_is_followed_through_relative_redirects()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        hub.Renamed["old-name"] = "tiny-model";
        using HubClient client = Client(hub);

        string snapshot = await client.DownloadAsync("org/old-name", new HubDownloadOptions { AllowPatterns = ["*.json", "*.md"] }, null, _timeout.Token);

        snapshot.Should().Be(Path.Combine(_cache, "models--org--old-name", "snapshots", commit));
        Tree(snapshot).Should().Equal("README.md", "config.json");
        File.ReadAllBytes(Path.Combine(snapshot, "config.json")).Should().Equal(Config.Content);
    }

    [Fact]
    public async Task A_blob_locked_by_another_downloader_is_waited_for()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        using HubClient client = Client(hub);
        string lockPath = Path.Combine(_cache, ".locks", "models--org--tiny-model", Weights.Sha256 + ".lock");
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        Task<string> download;
        using (new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            download = client.DownloadAsync("org/tiny-model", new HubDownloadOptions { AllowPatterns = [Weights.Path] }, null, _timeout.Token);
            await Task.Delay(700);
            download.IsCompleted.Should().BeFalse();
            hub.Requests.Should().NotContain(r => r.Server == "cdn");
        }

        string snapshot = await download;
        File.ReadAllBytes(Path.Combine(snapshot, Weights.Path)).Should().Equal(Weights.Content);
    }

    [Fact]
    public async Task A_snapshot_file_whose_blob_was_deleted_is_downloaded_again()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit));
        using HubClient client = Client(hub);
        var options = new HubDownloadOptions { AllowPatterns = [Weights.Path] };
        string snapshot = await client.DownloadAsync("org/tiny-model", options, null, _timeout.Token);
        File.Delete(Path.Combine(_cache, "models--org--tiny-model", "blobs", Weights.Sha256));

        await client.DownloadAsync("org/tiny-model", options, null, _timeout.Token);

        File.ReadAllBytes(Path.Combine(snapshot, Weights.Path)).Should().Equal(Weights.Content);
        hub.Requests.Count(r => r.Server == "cdn").Should().Be(2);
    }

    [Fact]
    public async Task Cancellation_leaves_no_blob_and_the_next_call_completes()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(Model(commit)) { CdnDelayMs = 2_000 };
        using HubClient client = Client(hub);
        var options = new HubDownloadOptions { AllowPatterns = [Weights.Path] };
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));

        await client.Invoking(c => c.DownloadAsync("org/tiny-model", options, null, cancel.Token)).Should().ThrowAsync<OperationCanceledException>();

        string repo = Path.Combine(_cache, "models--org--tiny-model");
        File.Exists(Path.Combine(repo, "blobs", Weights.Sha256)).Should().BeFalse();
        Directory.Exists(Path.Combine(repo, "refs")).Should().BeFalse();
        hub.CdnDelayMs = 0;
        string snapshot = await client.DownloadAsync("org/tiny-model", options, null, _timeout.Token);
        File.ReadAllBytes(Path.Combine(snapshot, Weights.Path)).Should().Equal(Weights.Content);
    }

    [Fact]
    public async Task A_cache_laid_out_by_huggingface_hub_is_used_offline_and_online_without_transfers()
    {
        // Built by hand exactly as huggingface_hub writes it: refs/main without newline, relative symlinks into blobs/.
        string commit = LoopbackHub.NewCommit();
        string repo = Path.Combine(_cache, "models--org--tiny-model");
        Directory.CreateDirectory(Path.Combine(repo, "blobs"));
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        Directory.CreateDirectory(Path.Combine(repo, "snapshots", commit));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);
        foreach (FakeFile f in new[] { Config, Weights })
        {
            File.WriteAllBytes(Path.Combine(repo, "blobs", f.Etag), f.Content);
            File.CreateSymbolicLink(Path.Combine(repo, "snapshots", commit, f.Path), $"../../blobs/{f.Etag}");
        }

        await using var hub = new LoopbackHub(Model(commit));
        using (HubClient offline = Client(hub, offline: true))
        {
            string folder = await offline.ResolveModelFolderAsync("org/tiny-model", cancellationToken: _timeout.Token);
            folder.Should().Be(Path.Combine(repo, "snapshots", commit));
        }

        using HubClient online = Client(hub);
        await online.DownloadAsync("org/tiny-model", new HubDownloadOptions { AllowPatterns = ["*.json", "*.safetensors"], IgnorePatterns = ["consolidated*"] }, null, _timeout.Token);
        hub.Requests.Select(r => $"{r.Method} {r.Path}").Should().Equal("GET /api/models/org/tiny-model/revision/main");
    }

    [Fact]
    public void Options_read_the_huggingface_variables_through_the_injected_reader()
    {
        var env = new Dictionary<string, string>
        {
            ["HF_HOME"] = "/tmp/hf-home",
            ["HF_TOKEN"] = "hf_abc",
            ["HF_HUB_OFFLINE"] = "1",
            ["HF_ENDPOINT"] = "http://127.0.0.1:9/",
        };
        HubClientOptions o = HubClientOptions.FromEnvironment(env.GetValueOrDefault);
        o.CacheDirectory.Should().Be(Path.Combine("/tmp/hf-home", "hub"));
        o.Token.Should().Be("hf_abc");
        o.Offline.Should().BeTrue();
        o.Endpoint.Should().Be("http://127.0.0.1:9");

        env["HF_HUB_CACHE"] = "/tmp/hf-cache";
        env["HF_HUB_OFFLINE"] = "0";
        env.Remove("HF_ENDPOINT");
        o = HubClientOptions.FromEnvironment(env.GetValueOrDefault);
        o.CacheDirectory.Should().Be("/tmp/hf-cache");
        o.Offline.Should().BeFalse();
        o.Endpoint.Should().Be("https://huggingface.co");
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
