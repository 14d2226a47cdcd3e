using Mistral.Hub;

namespace Mistral.Hub.Tests;

public sealed class ModelReferenceTests
{
    [Theory]
    [InlineData("mistralai/Mistral-7B-v0.1", true, "mistralai/Mistral-7B-v0.1", "main")]
    [InlineData("org/name@v1.2", true, "org/name", "v1.2")]
    [InlineData("org/name@", false, "org/name", "")]
    [InlineData("model", false, "model", "main")]
    [InlineData("./model", false, "./model", "main")]
    [InlineData("/abs/model", false, "/abs/model", "main")]
    [InlineData("a/b/c", false, "a/b/c", "main")]
    [InlineData("org/.hidden", false, "org/.hidden", "main")]
    public void ModelReferencesAreOrgSlashNameWithAnOptionalRevision(string value, bool ok, string repo, string revision)
    {
        HubClient.TryParseModelReference(value, out string r, out string rev).Should().Be(ok);
        r.Should().Be(repo);
        rev.Should().Be(revision);
    }
}
