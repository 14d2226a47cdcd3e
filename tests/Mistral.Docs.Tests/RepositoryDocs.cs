namespace Mistral.Docs.Tests;

/// <summary>The repository's markdown files whose C# blocks must compile, and their blocks.</summary>
internal static class RepositoryDocs
{
    /// <summary>The repository root (the folder holding Mistral.sln above the test binaries).</summary>
    public static string Root { get; } = FindRoot();

    private static readonly Lazy<IReadOnlyList<MarkdownSnippet>> AllSnippets = new(() =>
        Files().SelectMany(f => MarkdownSnippets.Parse(File.ReadAllText(Path.Combine(Root, f)), f)).ToList());

    /// <summary>
    /// README.md, every *.md under docs/ (recursively; the folder may not exist) and src/*/README.md (package READMEs),
    /// as '/'-separated paths relative to <see cref="Root"/>, in ordinal order after README.md.
    /// </summary>
    public static IReadOnlyList<string> Files()
    {
        var files = new List<string>();
        if (File.Exists(Path.Combine(Root, "README.md")))
        {
            files.Add("README.md");
        }

        var more = new List<string>();
        string docs = Path.Combine(Root, "docs");
        if (Directory.Exists(docs))
        {
            more.AddRange(Directory.EnumerateFiles(docs, "*.md", SearchOption.AllDirectories).Where(f => !InBuildOutput(f)));
        }

        string src = Path.Combine(Root, "src");
        if (Directory.Exists(src))
        {
            more.AddRange(Directory.EnumerateDirectories(src).Select(d => Path.Combine(d, "README.md")).Where(File.Exists));
        }

        files.AddRange(more.Select(f => Path.GetRelativePath(Root, f).Replace('\\', '/')).Order(StringComparer.Ordinal));
        return files;
    }

    /// <summary>Every C# block of <see cref="Files"/>, skipped ones included.</summary>
    public static IReadOnlyList<MarkdownSnippet> Snippets() => AllSnippets.Value;

    private static bool InBuildOutput(string path) =>
        path.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar).Any(p => p is "bin" or "obj" or "node_modules");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Mistral.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("Mistral.sln not found above " + AppContext.BaseDirectory);
    }
}
