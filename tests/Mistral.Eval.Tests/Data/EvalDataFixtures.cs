namespace Mistral.Eval.Tests.Data;

/// <summary>Locates tests/fixtures/eval-data from the test binaries' folder.</summary>
internal static class EvalDataFixtures
{
    public static string Directory { get; } = Find();

    public static string PathOf(string name) => Path.Combine(Directory, name);

    private static string Find()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "fixtures", "eval-data");
            if (System.IO.Directory.Exists(candidate))
            {
                return candidate;
            }

            dir = dir.Parent;
        }

        throw new DirectoryNotFoundException("tests/fixtures/eval-data not found above " + AppContext.BaseDirectory);
    }
}
