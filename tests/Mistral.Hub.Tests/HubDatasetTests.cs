using System.Text;
using Mistral.Eval.Data;

namespace Mistral.Hub.Tests;

/// <summary>Dataset repositories through HF URIs: <c>datasets--org--name</c> in the cache, Parquet shards read back with Mistral.Eval.</summary>
public sealed class HubDatasetTests : IDisposable
{
    private static readonly string[] Labels = ["sport", "food", "music"];
    private static readonly FakeFile Train0 = new("data/train-00000-of-00002.parquet", TestParquet.Classification(0, 7, Labels), Lfs: true);
    private static readonly FakeFile Train1 = new("data/train-00001-of-00002.parquet", TestParquet.Classification(7, 5, Labels), Lfs: true);
    private static readonly FakeFile Test0 = new("data/test-00000-of-00001.parquet", TestParquet.Classification(100, 4, Labels), Lfs: true);
    private static readonly FakeFile Readme = new("README.md", Encoding.UTF8.GetBytes("---\nlicense: mit\n---\n# news"), Lfs: false);
    private static readonly FakeFile Converted = new("default/train/0000.parquet", TestParquet.Classification(0, 3, Labels), Lfs: true);

    private readonly string _cache = Path.Combine(Path.GetTempPath(), "mistral-hub-tests", Guid.NewGuid().ToString("N"));
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));

    public void Dispose()
    {
        _timeout.Dispose();
        if (Directory.Exists(_cache))
        {
            Directory.Delete(_cache, recursive: true);
        }
    }

    private HubClient Client(LoopbackHub hub, bool offline = false) =>
        new(new HubClientOptions { Endpoint = hub.Endpoint, CacheDirectory = _cache, Offline = offline, RequestTimeout = TimeSpan.FromSeconds(10) });

    private static FakeRepo News(string commit) => new("datasets", "org/news", commit, [Readme, Train0, Train1, Test0]);

    [Fact]
    public async Task A_glob_uri_downloads_a_splits_shards_into_the_datasets_cache_and_they_read_as_parquet()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(News(commit));
        using HubClient client = Client(hub);

        IReadOnlyList<string> files = await client.DownloadFilesAsync(HubUri.Parse("hf://datasets/org/news/data/train-*.parquet"), null, _timeout.Token);

        string snapshot = Path.Combine(_cache, "datasets--org--news", "snapshots", commit);
        files.Should().Equal(Path.Combine(snapshot, Train0.Path), Path.Combine(snapshot, Train1.Path));
        foreach (var (file, fake) in files.Zip([Train0, Train1]))
        {
            new FileInfo(file).LinkTarget.Should().Be($"../../../blobs/{fake.Sha256}", "huggingface_hub's relative symlink from a sub-folder");
        }

        File.ReadAllText(Path.Combine(_cache, "datasets--org--news", "refs", "main")).Should().Be(commit);
        Directory.Exists(Path.Combine(_cache, "models--org--news")).Should().BeFalse();
        File.Exists(Path.Combine(snapshot, Test0.Path)).Should().BeFalse("only the glob's files are fetched");
        hub.Requests.Should().Contain(r => r.Method == "GET" && r.Path == "/api/datasets/org/news/revision/main");
        hub.Requests.Where(r => r.Method == "HEAD").Select(r => r.Path).Should().BeEquivalentTo(
            $"/datasets/org/news/resolve/{commit}/{Train0.Path}", $"/datasets/org/news/resolve/{commit}/{Train1.Path}");

        var reader = new DatasetReader();
        var first = await reader.ReadAsync(files[0], ColumnMapping.Classification, ReadOptions.Strict, _timeout.Token);
        var second = await reader.ReadAsync(files[1], ColumnMapping.Classification, ReadOptions.Strict, _timeout.Token);
        first.Examples.Select(e => e.Input).Should().Equal(Enumerable.Range(0, 7).Select(i => $"example {i} about {Labels[i % 3]}"));
        second.Examples.Should().HaveCount(5);
        second.Examples[0].Target.Should().Be(Labels[7 % 3]);

        using HubClient offline = Client(hub, offline: true);
        int seen = hub.Requests.Count;
        (await offline.DownloadFilesAsync(HubUri.Parse("hf://datasets/org/news/data/train-*.parquet"), null, _timeout.Token)).Should().Equal(files);
        hub.Requests.Should().HaveCount(seen, "offline resolves from the cache");
    }

    [Fact]
    public async Task A_folder_or_a_file_uri_selects_that_folder_or_file_and_a_pinned_commit_needs_no_ref()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(News(commit));
        using HubClient client = Client(hub);

        var folder = await client.DownloadFilesAsync(HubUri.Parse("hf://datasets/org/news/data"), null, _timeout.Token);
        folder.Select(Path.GetFileName).Should().Equal("test-00000-of-00001.parquet", "train-00000-of-00002.parquet", "train-00001-of-00002.parquet");

        var file = await client.DownloadFilesAsync(HubUri.Parse($"hf://datasets/org/news@{commit}/README.md"), null, _timeout.Token);
        file.Should().ContainSingle().Which.Should().EndWith(Path.Combine(commit, "README.md"));
        File.ReadAllBytes(file[0]).Should().Equal(Readme.Content);
    }

    [Fact]
    public async Task A_special_ref_revision_resolves_as_the_parquet_conversions_do()
    {
        string commit = LoopbackHub.NewCommit();
        var repo = new FakeRepo("datasets", "org/news", commit, [Readme, Converted]) { Branches = ["refs/convert/parquet"] };
        await using var hub = new LoopbackHub(repo);
        using HubClient client = Client(hub);

        var files = await client.DownloadFilesAsync(HubUri.Parse("hf://datasets/org/news@refs/convert/parquet/default/train/0000.parquet"), null, _timeout.Token);

        files.Should().ContainSingle();
        hub.Requests.Should().Contain(r => r.Path == "/api/datasets/org/news/revision/refs%2Fconvert%2Fparquet");
        File.ReadAllText(Path.Combine(_cache, "datasets--org--news", "refs", "refs", "convert", "parquet")).Should().Be(commit, "huggingface_hub keeps the ref at refs/<revision>");
        (await new DatasetReader().ReadAsync(files[0], ColumnMapping.Classification)).Examples.Should().HaveCount(3);
    }

    [Fact]
    public async Task No_matching_file_is_an_error_that_lists_what_the_repository_has()
    {
        string commit = LoopbackHub.NewCommit();
        await using var hub = new LoopbackHub(News(commit));
        using HubClient client = Client(hub);

        var e = await client.Invoking(c => c.DownloadFilesAsync(HubUri.Parse("hf://datasets/org/news/data/validation-*.parquet"), null, _timeout.Token))
            .Should().ThrowAsync<HubException>();
        e.Which.Message.Should().Contain("no file of org/news@main matches \"data/validation-*.parquet\"").And.Contain(Train0.Path).And.Contain("README.md");

        var missing = await client.Invoking(c => c.DownloadFilesAsync(HubUri.Parse("hf://datasets/org/absent/x.parquet"), null, _timeout.Token))
            .Should().ThrowAsync<HubException>();
        missing.Which.Message.Should().Contain("dataset repository org/absent not found");
    }
}
