namespace Mistral.Hub.Tests;

/// <summary>HF URIs as huggingface_hub's <c>parse_hf_uri</c> reads them (its documented valid and invalid examples, models and datasets).</summary>
public sealed class HubUriTests
{
    [Theory]
    [InlineData("hf://my-org/my-model", HubRepoType.Model, "my-org/my-model", "main", "")]
    [InlineData("hf://models/my-org/my-model/config.json", HubRepoType.Model, "my-org/my-model", "main", "config.json")]
    [InlineData("hf://models/my-org/my-model@v1.0/config.json", HubRepoType.Model, "my-org/my-model", "v1.0", "config.json")]
    [InlineData("hf://datasets/my-org/my-dataset", HubRepoType.Dataset, "my-org/my-dataset", "main", "")]
    [InlineData("hf://datasets/my-org/my-dataset@dev/train.csv", HubRepoType.Dataset, "my-org/my-dataset", "dev", "train.csv")]
    [InlineData("hf://datasets/my-org/my-dataset@refs/pr/10/data.csv", HubRepoType.Dataset, "my-org/my-dataset", "refs/pr/10", "data.csv")]
    [InlineData("hf://datasets/my-org/my-dataset@refs/convert/parquet/default/train/0000.parquet", HubRepoType.Dataset, "my-org/my-dataset", "refs/convert/parquet", "default/train/0000.parquet")]
    [InlineData("hf://datasets/my-org/my-dataset@feature%2Fx/a.csv", HubRepoType.Dataset, "my-org/my-dataset", "feature/x", "a.csv")]
    [InlineData("hf://datasets/rungalileo/20_Newsgroups_Fixed/data/train-*.parquet", HubRepoType.Dataset, "rungalileo/20_Newsgroups_Fixed", "main", "data/train-*.parquet")]
    [InlineData("hf://datasets/org/data/data/", HubRepoType.Dataset, "org/data", "main", "data")]
    [InlineData("hf://org/model/file@1.txt", HubRepoType.Model, "org/model", "main", "file@1.txt")]
    public void Valid_uris_read_as_huggingface_hub_reads_them(string text, HubRepoType type, string repo, string revision, string path)
    {
        HubUri.TryParse(text, out HubUri? uri).Should().BeTrue();
        uri!.RepoType.Should().Be(type);
        uri.RepoId.Should().Be(repo);
        uri.Revision.Should().Be(revision);
        uri.Path.Should().Be(path);
        HubUri.Parse(uri.ToString()).Should().Be(uri, "the canonical form reads back the same");
    }

    [Theory]
    [InlineData("my-org/my-model", "must start with hf://")]
    [InlineData("./local/path", "must start with hf://")]
    [InlineData("hf://dataset/org/m", "plural")]
    [InlineData("hf://model/org/m", "plural")]
    [InlineData("hf://datasets", "namespace/name")]
    [InlineData("hf://gpt2", "namespace/name")]
    [InlineData("hf://datasets/squad", "namespace/name")]
    [InlineData("hf://org/m@", "empty")]
    [InlineData("hf://datasets/foo/bar@/x", "empty")]
    [InlineData("hf://spaces/user/space", "only models and datasets")]
    [InlineData("hf://buckets/org/b", "only models and datasets")]
    [InlineData("hf://org/.hidden", "namespace/name")]
    [InlineData("hf://datasets/org/data/a//b", "empty segment")]
    public void Invalid_uris_are_refused_with_the_reason(string text, string reason)
    {
        HubUri.TryParse(text, out _).Should().BeFalse();
        FluentActions.Invoking(() => HubUri.Parse(text)).Should().Throw<FormatException>().WithMessage($"*{reason}*");
    }

    [Fact]
    public void Canonical_form_names_the_type_and_keeps_special_refs_whole()
    {
        HubUri.Parse("hf://org/model").ToString().Should().Be("hf://models/org/model");
        HubUri.Parse("hf://datasets/org/d@refs/convert/parquet/x.parquet").ToString().Should().Be("hf://datasets/org/d@refs/convert/parquet/x.parquet");
        new HubUri(HubRepoType.Dataset, "org/d", "feature/x", "a.csv").ToString().Should().Be("hf://datasets/org/d@feature%2Fx/a.csv");
    }

    [Fact]
    public void Allow_patterns_select_a_glob_a_file_or_folder_or_everything()
    {
        HubUri.Parse("hf://datasets/o/d/data/train-*.parquet").AllowPatterns.Should().Equal("data/train-*.parquet");
        HubUri.Parse("hf://datasets/o/d/data").AllowPatterns.Should().Equal("data", "data/");
        HubUri.Parse("hf://datasets/o/d").AllowPatterns.Should().BeNull();
    }
}
