using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Mistral.Eval.Data;

namespace Mistral.Hub.Tests;

/// <summary>
/// The other interop direction: a cache folder written by Python's huggingface_hub (<c>snapshot_download</c>,
/// <c>hf_hub_download</c>) is read by <see cref="HubClient"/> offline. The fixture is made by
/// <c>tools/hub/python_cache_fixture.py</c> against a loopback imitation of the Hub and holds the cache as huggingface_hub
/// wrote it (symlinks included) and a manifest of what was served: repositories, commits, revisions, files and SHA-256.
/// </summary>
public sealed class PythonWrittenCacheTests : IDisposable
{
    private const string Fixture = "hub/python_hub_cache.tar.gz";
    private const string MadeBy = "python3 tools/hub/python_cache_fixture.py tests/fixtures/hub/python_hub_cache.tar.gz";

    private readonly string _root = Path.Combine(Path.GetTempPath(), "mistral-hub-tests", Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    [FixtureFact(Fixture, MadeBy)]
    public async Task A_cache_written_by_huggingface_hub_resolves_offline_by_branch_tag_and_commit_with_the_served_bytes()
    {
        JsonNode manifest = await Extract();
        manifest["ok"]!.GetValue<bool>().Should().BeTrue($"the script's own checks passed ({manifest["problems"]!.ToJsonString()})");
        string cache = Path.Combine(_root, manifest["cache_folder"]!.GetValue<string>());
        var repos = manifest["repos"]!.AsArray();
        repos.Select(r => r!["repo_id"]!.GetValue<string>()).Should().BeEquivalentTo("tiny-org/tiny-model", "tiny-org/tiny-dataset");
        using var client = new HubClient(new HubClientOptions { CacheDirectory = cache, Offline = true });

        foreach (JsonNode repo in repos!)
        {
            string id = repo["repo_id"]!.GetValue<string>();
            HubRepoType type = repo["repo_type"]!.GetValue<string>() == "dataset" ? HubRepoType.Dataset : HubRepoType.Model;
            string commit = repo["commit"]!.GetValue<string>();
            string folder = Path.Combine(cache, HubCacheLayout.RepoFolderName(id, type));
            string snapshot = Path.Combine(folder, "snapshots", commit);
            string[] revisions = [.. repo["revisions"]!.AsArray().Select(r => r!.GetValue<string>()), commit];
            revisions.Should().Contain("main");
            foreach (string revision in revisions)
            {
                (await client.DownloadAsync(id, new HubDownloadOptions { RepoType = type, Revision = revision })).Should().Be(snapshot, $"{id}@{revision}");
            }

            var files = repo["files"]!.AsArray().Select(f => new
            {
                Path = f!["path"]!.GetValue<string>(),
                Size = f["size"]!.GetValue<long>(),
                Sha256 = f["sha256"]!.GetValue<string>(),
                Etag = f["etag"]!.GetValue<string>(),
            }).ToArray();
            IReadOnlyList<string> found = await client.DownloadFilesAsync(new HubUri(type, id));
            found.Select(f => Path.GetRelativePath(snapshot, f).Replace('\\', '/')).Should().BeEquivalentTo(files.Select(f => f.Path));
            foreach (var f in files)
            {
                string local = Path.Combine(snapshot, f.Path);
                var info = new FileInfo(local);
                info.LinkTarget.Should().NotBeNull($"{id}/{f.Path} is huggingface_hub's symlink, recreated from the archive")
                    .And.StartWith("../").And.Contain("blobs/");
                info.ResolveLinkTarget(returnFinalTarget: true)!.FullName.Should().Be(Path.Combine(folder, "blobs", f.Etag));
                byte[] content = await File.ReadAllBytesAsync(local);
                content.LongLength.Should().Be(f.Size);
                Convert.ToHexStringLower(SHA256.HashData(content)).Should().Be(f.Sha256, $"{id}/{f.Path} holds the bytes the Hub served");
            }
        }

        (await client.ResolveModelFolderAsync("tiny-org/tiny-model")).Should().EndWith(Path.Combine("models--tiny-org--tiny-model", "snapshots", repos[0]!["commit"]!.GetValue<string>()));

        // The dataset's Parquet file, downloaded by huggingface_hub, reads as the same file read from tests/fixtures.
        IReadOnlyList<string> parquet = await client.DownloadFilesAsync(HubUri.Parse("hf://datasets/tiny-org/tiny-dataset/data/train-*.parquet"));
        var reader = new DatasetReader();
        var fromPython = await reader.ReadAsync(parquet.Should().ContainSingle().Subject, ColumnMapping.Classification, ReadOptions.StudyCleaning);
        var original = await reader.ReadAsync(TestPaths.FixturePath("eval-data", "newsgroups_sample.parquet"), ColumnMapping.Classification, ReadOptions.StudyCleaning);
        fromPython.Examples.Should().Equal(original.Examples);
        fromPython.Examples.Should().NotBeEmpty();
    }

    private async Task<JsonNode> Extract()
    {
        Directory.CreateDirectory(_root);
        await using (var gz = new GZipStream(File.OpenRead(TestPaths.FixturePath(Fixture.Split('/'))), CompressionMode.Decompress))
        {
            await TarFile.ExtractToDirectoryAsync(gz, _root, overwriteFiles: false);
        }

        return JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(_root, "manifest.json")))!;
    }
}
