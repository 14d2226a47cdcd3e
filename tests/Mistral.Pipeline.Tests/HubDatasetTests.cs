using System.Text.Json.Nodes;
using Mistral.Eval.Data;
using Mistral.Hub;
using Mistral.Hub.Tests;
using Mistral.Pipeline.Experiments;
using Mistral.Samples.Study;
using Xunit.Abstractions;

namespace Mistral.Pipeline.Tests;

/// <summary>
/// Hub datasets (HF URIs) and Hub models in the library and the Study CLI, against the loopback Hub; the Hub client
/// options are passed explicitly, so no process-wide variable (HF_ENDPOINT, HF_HUB_CACHE) is read or changed.
/// </summary>
public sealed class HubDatasetTests(PipelineFixture fixture, ITestOutputHelper output) : IClassFixture<PipelineFixture>
{
    private const string TrainUri = "hf://datasets/acme/news/data/train-*.parquet";
    private const string TestUri = "hf://datasets/acme/news/data/test-*.parquet";

    private static readonly FakeFile Train0 = new("data/train-00000-of-00002.parquet", TestParquet.Classification(0, 12, PipelineFixture.Labels), Lfs: true);
    private static readonly FakeFile Train1 = new("data/train-00001-of-00002.parquet", TestParquet.Classification(12, 9, PipelineFixture.Labels), Lfs: true);
    private static readonly FakeFile Test0 = new("data/test-00000-of-00001.parquet", TestParquet.Classification(100, 5, PipelineFixture.Labels), Lfs: true);

    private static FakeRepo News() => new("datasets", "acme/news", LoopbackHub.NewCommit(), [Train0, Train1, Test0]);

    [Fact]
    public async Task A_glob_uri_reads_a_splits_shards_as_one_and_sweep_data_identifies_them_by_content()
    {
        string cache = TestPaths.TempDir();
        await using var hub = new LoopbackHub(News());
        var options = new HubClientOptions { Endpoint = hub.Endpoint, CacheDirectory = cache };

        DatasetReadResult train = await DatasetSource.ReadAsync(TrainUri, ColumnMapping.Classification, ReadOptions.StudyCleaning, options);

        train.FilePath.Should().Be(TrainUri);
        train.RowsSeen.Should().Be(21);
        train.Examples.Select(e => e.Input).Should().Equal(Enumerable.Range(0, 21).Select(i => $"example {i} about {PipelineFixture.Labels[i % 3]}"), "shards in order");
        train.Describe().Should().Be($"read 21 of 21 rows from '{TrainUri}'; skipped none");

        SweepData data = await SweepData.ReadAsync(TrainUri, TestUri, ColumnMapping.Classification, hub: options);
        data.Train.Should().HaveCount(21);
        data.Test.Should().HaveCount(5);
        data.Identity["train"]!.AsArray().Select(f => f!["sha256"]!.GetValue<string>()).Should().Equal(Train0.Sha256, Train1.Sha256);
        data.Provenance["train_files"]!.AsArray().Should().HaveCount(2).And.OnlyContain(f => f!.GetValue<string>().StartsWith(Path.Combine(cache, "datasets--acme--news"), StringComparison.Ordinal));

        // One file from the Hub has the identity of the same bytes read from a folder: the data, not where it was read from.
        string local = Path.Combine(TestPaths.TempDir(), "test-00000-of-00001.parquet");
        File.WriteAllBytes(local, Test0.Content);
        SweepData copy = await SweepData.ReadAsync(TrainUri, local, ColumnMapping.Classification, hub: options);
        copy.Identity["test"]!.ToJsonString().Should().Be(data.Identity["test"]!.ToJsonString());

        var offline = options with { Offline = true };
        (await DatasetSource.ResolveAsync(TrainUri, offline)).Should().HaveCount(2, "the cached snapshot serves the URI offline");
        await FluentActions.Invoking(() => DatasetSource.ResolveAsync("hf://datasets/acme/news/data/dev-*.parquet", offline)).Should().ThrowAsync<HubException>()
            .WithMessage("*no file of acme/news@main matches \"data/dev-*.parquet\" (in the cached snapshot: data/test-00000-of-00001.parquet, data/train-00000-of-00002.parquet, data/train-00001-of-00002.parquet)*");
    }

    [Fact]
    public async Task Train_async_takes_an_hf_uri_through_the_pipelines_hub_options()
    {
        string cache = TestPaths.TempDir();
        await using var hub = new LoopbackHub(News());
        using var tuned = await MistralPipeline.Create().FromPretrained(fixture.Folder).WithHub(new HubClientOptions { Endpoint = hub.Endpoint, CacheDirectory = cache })
            .OnDevice("cpu").WithLoRA(r: 2).WithPacking(new Mistral.Peft.Training.SftPackingOptions { SequenceLength = 64 }).WithTrainingOptions(o => o with { Epochs = 1 }).ForClassification()
            .TrainAsync(TrainUri);
        tuned.Training.Examples.Should().Be(21);
        tuned.Training.StepsCompleted.Should().BeGreaterThan(0);
        Directory.Exists(Path.Combine(cache, "datasets--acme--news", "snapshots")).Should().BeTrue();
    }

    [Fact]
    public async Task The_study_cli_runs_a_hub_model_on_hub_datasets()
    {
        string cache = TestPaths.TempDir();
        FakeFile Model(string name, bool lfs) => new(name, File.ReadAllBytes(Path.Combine(fixture.Folder, name)), lfs);
        var model = new FakeRepo("models", "acme/tiny-mistral", LoopbackHub.NewCommit(), [Model("config.json", false), Model("model.safetensors", true), Model("tokenizer.model", true)]);
        FakeRepo news = News();
        await using var hub = new LoopbackHub(model, news);
        var options = new HubClientOptions { Endpoint = hub.Endpoint, CacheDirectory = cache };
        string results = Path.Combine(TestPaths.TempDir(), "baseline");

        var (code, stdout, stderr) = await Invoke(
            ["baseline", "--task", "classification", "--model", "acme/tiny-mistral", "--train", TrainUri, "--test", TestUri, "--out", results, "--shots", "1", "--max-test", "2", "--device", "cpu"],
            options);

        code.Should().Be(0, stderr);
        stdout.Should().Contain("on 21 training / 2 test examples");
        Directory.Exists(Path.Combine(cache, "models--acme--tiny-mistral", "snapshots", model.Commit)).Should().BeTrue();
        Directory.Exists(Path.Combine(cache, "datasets--acme--news", "snapshots", news.Commit)).Should().BeTrue();
        string run = Directory.GetDirectories(Path.Combine(results, "runs")).First();
        var data = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "config.json")))!["provenance"]!["data"]!;
        data["train_path"]!.GetValue<string>().Should().Be(TrainUri);
        data["test_files"]!.AsArray().Should().ContainSingle();

        (code, _, stderr) = await Invoke(["baseline", "--task", "classification", "--model", fixture.Folder, "--train", "hf://dataset/acme/news/x.parquet", "--test", TestUri], options);
        code.Should().Be(2);
        stderr.Should().Contain("--train: \"hf://dataset/acme/news/x.parquet\" is not a usable HF URI: the type prefix must be plural ('datasets/').");

        (code, _, stderr) = await Invoke(["baseline", "--task", "classification", "--model", fixture.Folder, "--train", "hf://datasets/acme/absent/x.parquet", "--test", TestUri, "--out", results], options);
        code.Should().Be(2);
        stderr.Should().Contain("dataset repository acme/absent not found");
    }

    private async Task<(int Code, string Out, string Err)> Invoke(string[] args, HubClientOptions hub)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = await StudyCli.RunAsync(args, stdout, stderr, hub, CancellationToken.None);
        output.WriteLine($"$ study {string.Join(' ', args)}\n{stdout}\n{stderr}");
        return (code, stdout.ToString(), stderr.ToString());
    }
}
