namespace Mistral.Docs.Tests;

/// <summary>The extractor and the wrapper on small synthetic markdown texts.</summary>
public class MarkdownSnippetsTests
{
    private const string Sample = """
        # Title
        Some text.

        ```csharp
        var x = 1;
        ```

        ```bash
        echo not C#
        ```

        <!-- an ordinary comment -->
        <!-- snippet-context: string folder = "model"; -->

        ``` cs title="second"
        Console.WriteLine(folder);
        ```

        ````markdown
        ```csharp
        inside a markdown block: not a snippet
        ```
        ````

        <!-- snippet: skip needs a GPU -->
        ~~~c#
        Cuda();
        ~~~
        """;

    [Fact]
    public void Finds_csharp_blocks_with_their_lines_and_directives()
    {
        var snippets = MarkdownSnippets.Parse(Sample, "sample.md");
        snippets.Select(s => (s.FenceLine, s.Code)).Should().Equal(
            (4, "var x = 1;"),
            (15, "Console.WriteLine(folder);"),
            (26, "Cuda();"));
        snippets[0].Contexts.Should().BeEmpty();
        snippets[0].SkipReason.Should().BeNull();
        snippets[1].Contexts.Should().Equal(new SnippetText(" string folder = \"model\"; ", 13));
        snippets[1].CodeLine.Should().Be(16);
        snippets[2].SkipReason.Should().Be("needs a GPU");
        snippets.Should().OnlyContain(s => s.File == "sample.md");
    }

    [Fact]
    public void A_context_may_span_lines_and_several_may_precede_a_block()
    {
        const string text = "<!-- snippet-context: using TorchSharp;\nint a = 1;\n-->\n<!-- snippet-context: int b = 2; -->\n```csharp\nConsole.WriteLine(a + b);\n```\n";
        var snippet = MarkdownSnippets.Parse(text, "m.md").Single();
        snippet.Contexts.Should().Equal(new SnippetText(" using TorchSharp;\nint a = 1;\n", 1), new SnippetText(" int b = 2; ", 4));
        SnippetCompiler.ForLibraries.Compile(snippet).Success.Should().BeTrue();
    }

    [Theory]
    [InlineData("<!-- snippet: skip -->\n```csharp\nx\n```", "m.md(1): '<!-- snippet: skip -->' needs a reason*")]
    [InlineData("<!-- snippet-contxt: int a; -->\n```csharp\nx\n```", "m.md(1): unknown snippet directive*snippet-contxt*")]
    [InlineData("<!-- snippet-context: int a; -->\nSome text.\n```csharp\nx\n```", "m.md(1): *right before a ```csharp block, but line 2 is text.")]
    [InlineData("<!-- snippet-context: int a; -->\n```bash\nls\n```", "m.md(1): *precedes a ```bash block at line 2.")]
    [InlineData("text\n\n<!-- snippet: skip why -->\n", "m.md(3): *but the file ends.")]
    [InlineData("a\n```csharp\nvar x = 1;\n", "m.md(2): the ```csharp block is never closed.")]
    public void Malformed_or_misplaced_directives_are_errors_naming_the_line(string markdown, string message)
    {
        FluentActions.Invoking(() => MarkdownSnippets.Parse(markdown, "m.md")).Should().Throw<FormatException>().WithMessage(message);
    }

    [Fact]
    public void Usings_are_hoisted_and_line_numbers_kept()
    {
        const string text = "intro\n```csharp\nusing Mistral.Core.Configuration; using static TorchSharp.torch;\nusing var t = zeros(2);\nvar c = MistralConfig.FromFile(\"config.json\");\nawait Task.Yield();\n```\n";
        var snippet = MarkdownSnippets.Parse(text, "m.md").Single();
        string source = SnippetCompiler.BuildSource(snippet);
        source.Should().Contain("#line 3 \"m.md\"\nusing Mistral.Core.Configuration;\n#line 3 \"m.md\"\nusing static TorchSharp.torch;\n");
        string blanked = new(' ', "using Mistral.Core.Configuration; using static TorchSharp.torch;".Length);
        source.Should().Contain($"\n{blanked}\nusing var t = zeros(2);\n",
            "'using var' is a statement: it stays in the body, after the blanked line of directives");
        source.Should().Contain("internal static async Task RunAsync()");
        var result = SnippetCompiler.ForLibraries.Compile(snippet);
        result.Errors.Should().BeEmpty(result.Success ? "" : result.Report());
    }

    [Fact]
    public void Directives_before_a_statement_on_one_line_are_hoisted_and_the_statement_kept_in_place()
    {
        const string text = "<!-- snippet-context: using Mistral.Core.Configuration; string folder = \"m\"; -->\n```csharp\nConsole.WriteLine(MistralConfig.FromFile(folder).HiddenSize + missing);\n```\n";
        var snippet = MarkdownSnippets.Parse(text, "m.md").Single();
        string blanked = new(' ', " using Mistral.Core.Configuration; ".Length);
        SnippetCompiler.BuildSource(snippet).Should().Contain($"#line 1 \"m.md\"\n{blanked}string folder = \"m\"; \n");
        var result = SnippetCompiler.ForLibraries.Compile(snippet);
        result.Errors.Select(e => e.Id).Should().Equal("CS0103");
        result.Report().Should().Contain("m.md(3,63): error CS0103: The name 'missing' does not exist");
    }

    [Fact]
    public void A_failing_block_reports_the_file_the_markdown_line_and_the_diagnostic()
    {
        const string text = """
            # Doc

            <!-- snippet-context: string folder = "model"; -->
            ```csharp
            using Mistral.Core.Configuration;
            var config = MistralConfig.FromFile(Path.Combine(folder, "config.json"));
            Console.WriteLine(config.HiddenSize + undefinedVariable);
            var again = MistralConfig.FromFiles(folder);
            ```
            """;
        var snippet = MarkdownSnippets.Parse(text, "docs/guide.md").Single();
        var result = SnippetCompiler.ForLibraries.Compile(snippet);
        result.Success.Should().BeFalse();
        result.Errors.Select(e => e.Id).Should().Equal("CS0103", "CS0117");
        string report = result.Report();
        report.Should().StartWith("The ```csharp block at docs/guide.md line 4 does not compile (2 error(s)):\n");
        report.Should().Contain("  docs/guide.md(7,39): error CS0103: The name 'undefinedVariable' does not exist in the current context\n");
        report.Should().Contain("      | Console.WriteLine(config.HiddenSize + undefinedVariable);\n");
        report.Should().Contain("  docs/guide.md(8,27): error CS0117: 'MistralConfig' does not contain a definition for 'FromFiles'\n");
        report.Should().NotContain("Generated source", "every error maps to a markdown line");
    }

    [Fact]
    public void Errors_in_a_context_or_a_using_point_at_their_own_lines()
    {
        const string text = "<!-- snippet-context: int count = \"text\"; -->\n```csharp\nusing Mistral.NoSuchNamespace;\nConsole.WriteLine(count);\n```\n";
        var result = SnippetCompiler.ForLibraries.Compile(MarkdownSnippets.Parse(text, "m.md").Single());
        string report = result.Report();
        report.Should().Contain("m.md(1,").And.Contain("error CS0029: Cannot implicitly convert type 'string' to 'int'");
        report.Should().Contain("m.md(3,").And.Contain("error CS0234: The type or namespace name 'NoSuchNamespace' does not exist in the namespace 'Mistral'");
    }

    [Fact]
    public void Snippets_see_the_libraries_and_dotnet_implicit_usings()
    {
        const string text = """
            ```csharp
            using Mistral.Eval.Metrics;
            using Mistral.Peft.Lora;
            using TorchSharp;
            var report = ClassificationMetrics.Compute(["a"], ["a"], labels: ["a", "b"]);
            var options = LoraOptions.Classification;
            using var t = torch.zeros(2);
            var files = Directory.GetFiles(".").ToList();
            await Task.Delay(0, CancellationToken.None);
            ```
            """;
        var result = SnippetCompiler.ForLibraries.Compile(MarkdownSnippets.Parse(text, "m.md").Single());
        result.Errors.Should().BeEmpty(result.Success ? "" : result.Report());
    }
}
