namespace Mistral.Tests.Shared;

/// <summary>Where the test fixtures are, and fresh temporary folders.</summary>
internal static class TestPaths
{
    /// <summary>A path under tests/fixtures, found by walking up from the test binaries.</summary>
    public static string FixturePath(params string[] parts) => RepoPath(["tests", "fixtures", .. parts]);

    /// <summary>A path under the repository root (the folder holding tests/fixtures, found by walking up from the test binaries), e.g. <c>RepoPath("kit", "model")</c>.</summary>
    public static string RepoPath(params string[] parts)
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, "tests", "fixtures")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return Path.Combine([dir ?? throw new DirectoryNotFoundException("tests/fixtures not found above the test binaries."), .. parts]);
    }

    /// <summary>A new empty folder under the system temp folder.</summary>
    public static string TempDir()
    {
        string d = Path.Combine(Path.GetTempPath(), "mistral-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}
