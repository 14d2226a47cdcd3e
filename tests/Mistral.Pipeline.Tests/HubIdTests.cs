using Mistral.Hub;
using Mistral.Peft.Adapters;

namespace Mistral.Pipeline.Tests;

/// <summary>FromPretrained accepts a Hub id and finds it in a huggingface_hub cache (offline here: no network in tests).</summary>
public sealed class HubIdTests(PipelineFixture fixture) : IClassFixture<PipelineFixture>
{
    [Fact]
    public void AHubIdResolvesFromThePythonCacheLayout()
    {
        // The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/…}.
        string cache = TestPaths.TempDir();
        const string commit = "0123456789abcdef0123456789abcdef01234567";
        string repo = Path.Combine(cache, "models--acme--tiny-mistral");
        string snapshot = Path.Combine(repo, "snapshots", commit);
        Directory.CreateDirectory(snapshot);
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);
        foreach (string file in new[] { "config.json", "model.safetensors", "tokenizer.model" })
        {
            File.Copy(Path.Combine(fixture.Folder, file), Path.Combine(snapshot, file));
        }

        var hub = new HubClientOptions { CacheDirectory = cache, Offline = true };
        using var pipeline = MistralPipeline.Create().FromPretrained("acme/tiny-mistral").WithHub(hub).OnDevice("cpu").WithLoRA(r: 2).ForClassification().Build();
        Path.GetFullPath(pipeline.ModelFolder).Should().Be(Path.GetFullPath(snapshot));
        string adapter = TestPaths.TempDir();
        pipeline.SaveAdapter(adapter);
        PeftAdapter.ReadConfig(adapter).BaseModelNameOrPath.Should().Be("acme/tiny-mistral", "the adapter records the Hub id, as PEFT does");

        var missing = () => MistralPipeline.Create().FromPretrained("acme/absent").WithHub(hub).Build();
        missing.Should().Throw<InvalidOperationException>().WithMessage("Build: FromPretrained(\"acme/absent\"):*");
    }
}
