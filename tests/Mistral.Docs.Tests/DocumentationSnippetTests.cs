using Xunit.Abstractions;

namespace Mistral.Docs.Tests;

/// <summary>Every ```csharp block of the documentation compiles against the libraries (see <see cref="MarkdownSnippets"/> for the directives).</summary>
public class DocumentationSnippetTests(ITestOutputHelper output)
{
    public static TheoryData<string, int> Blocks()
    {
        var data = new TheoryData<string, int>();
        foreach (MarkdownSnippet s in RepositoryDocs.Snippets().Where(s => s.SkipReason is null))
        {
            data.Add(s.File, s.FenceLine);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Block_compiles(string file, int line)
    {
        MarkdownSnippet snippet = RepositoryDocs.Snippets().Single(s => s.File == file && s.FenceLine == line);
        SnippetCompileResult result = SnippetCompiler.ForLibraries.Compile(snippet);
        if (!result.Success)
        {
            Assert.Fail(result.Report());
        }
    }

    [Fact]
    public void Documentation_is_found_and_skipped_blocks_are_counted()
    {
        IReadOnlyList<MarkdownSnippet> all = RepositoryDocs.Snippets();
        foreach (var group in all.GroupBy(s => s.File))
        {
            output.WriteLine($"{group.Key}: {group.Count()} C# block(s), {group.Count(s => s.SkipReason is not null)} skipped");
        }

        var skipped = all.Where(s => s.SkipReason is not null).ToList();
        output.WriteLine($"{all.Count - skipped.Count} compiled, {skipped.Count} skipped");
        foreach (MarkdownSnippet s in skipped)
        {
            output.WriteLine($"  skipped {s.File}:{s.FenceLine}: {s.SkipReason}");
        }

        output.WriteLine("References: " + string.Join(", ", SnippetCompiler.ForLibraries.ReferenceNames.Where(n => !n.StartsWith("System", StringComparison.Ordinal))));
        RepositoryDocs.Files().Should().StartWith("README.md");
        all.Count(s => s.File == "README.md").Should().BeGreaterThanOrEqualTo(7, "README.md documents the API in C# blocks");
        skipped.Where(s => string.IsNullOrWhiteSpace(s.SkipReason)).Should().BeEmpty("a skip needs a reason");
        skipped.Count.Should().BeLessThanOrEqualTo(all.Count / 4, "opting out of the check is for rare, deliberately incomplete blocks");
        SnippetCompiler.ForLibraries.ReferenceNames.Should().Contain(["Mistral.Core", "Mistral.Peft", "Mistral.Eval", "TorchSharp"]);
    }
}
