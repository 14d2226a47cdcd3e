using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Mistral.Docs.Tests;

/// <summary>
/// Compiles a <see cref="MarkdownSnippet"/> as the body of an <c>async Task</c> method: its contexts, then its code,
/// with the <c>using</c> directives that start a line (of either) hoisted to the top of the file and .NET's implicit
/// usings added.
/// <c>#line</c> directives map each diagnostic back to the markdown file and line.
/// </summary>
internal sealed partial class SnippetCompiler
{
    /// <summary>The implicit usings of an SDK-style .NET project (what a reader's program has).</summary>
    public static readonly IReadOnlyList<string> ImplicitUsings =
    [
        "System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Threading", "System.Threading.Tasks",
    ];

    private static readonly Lazy<SnippetCompiler> ForLibrariesValue = new(() => new SnippetCompiler(LibraryReferences()));

    private readonly IReadOnlyList<MetadataReference> references;

    /// <summary>Creates a compiler over the given metadata references.</summary>
    public SnippetCompiler(IReadOnlyList<MetadataReference> references) => this.references = references;

    /// <summary>
    /// A compiler whose references are the framework's trusted platform assemblies plus every <c>Mistral.*.dll</c> next to
    /// the test assembly (the projects this test project references) and, transitively, the assemblies they reference
    /// that are there too (TorchSharp, Microsoft.ML.Tokenizers, logging abstractions, …).
    /// </summary>
    public static SnippetCompiler ForLibraries => ForLibrariesValue.Value;

    /// <summary>The simple names of the library assemblies the snippets see (for messages).</summary>
    public IEnumerable<string> ReferenceNames => references.Select(r => Path.GetFileNameWithoutExtension(r.Display ?? "")).Order(StringComparer.Ordinal);

    /// <summary>The C# file a snippet is compiled as.</summary>
    public static string BuildSource(MarkdownSnippet snippet)
    {
        ArgumentNullException.ThrowIfNull(snippet);
        string path = snippet.File.Replace("\"", "", StringComparison.Ordinal);
        var usings = new List<(string Directive, int Line)>();
        var seen = new HashSet<string>(ImplicitUsings.Select(u => $"using {u};"), StringComparer.Ordinal);
        var body = new StringBuilder();
        foreach (SnippetText context in snippet.Contexts)
        {
            AppendBody(body, context.Text, context.Line, path, usings, seen);
        }

        AppendBody(body, snippet.Code, snippet.CodeLine, path, usings, seen);

        var source = new StringBuilder();
        source.Append("#nullable enable\n");
        foreach (string u in ImplicitUsings)
        {
            source.Append("using ").Append(u).Append(";\n");
        }

        foreach (var (directive, line) in usings)
        {
            source.Append("#line ").Append(line).Append(" \"").Append(path).Append("\"\n").Append(directive).Append('\n');
        }

        source.Append("#line default\n");
        source.Append("internal static class DocumentationSnippet\n{\n    internal static async Task RunAsync()\n    {\n");
        source.Append(body);
        source.Append("#line default\n        await Task.CompletedTask;\n    }\n}\n");
        return source.ToString();
    }

    /// <summary>Compiles <paramref name="snippet"/> and returns its errors (warnings are not errors here).</summary>
    public SnippetCompileResult Compile(MarkdownSnippet snippet)
    {
        ArgumentNullException.ThrowIfNull(snippet);
        string source = BuildSource(snippet);
        SyntaxTree tree = CSharpSyntaxTree.ParseText(source, new CSharpParseOptions(LanguageVersion.Latest), path: snippet.File + ".g.cs");
        var compilation = CSharpCompilation.Create(
            "DocumentationSnippet",
            [tree],
            references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var errors = compilation.GetDiagnostics()
            .Where(d => d.Severity == DiagnosticSeverity.Error)
            .OrderBy(d => d.Location.GetMappedLineSpan().StartLinePosition.Line)
            .ToList();
        return new SnippetCompileResult(snippet, source, errors);
    }

    // Appends text to the method body under a #line directive; the using directives a line starts with are hoisted
    // (blanked in the body, so lines and columns are kept).
    private static void AppendBody(StringBuilder body, string text, int firstLine, string path, List<(string, int)> usings, HashSet<string> seen)
    {
        body.Append("#line ").Append(firstLine).Append(" \"").Append(path).Append("\"\n");
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            Match prefix = LeadingUsingDirectives().Match(line);
            if (prefix.Success)
            {
                foreach (Match m in UsingDirective().Matches(prefix.Value))
                {
                    string directive = Regex.Replace(m.Value.Trim(), @"\s+", " ");
                    if (seen.Add(directive))
                    {
                        usings.Add((directive, firstLine + i));
                    }
                }

                // The rest of the line stays where it was (same line, same column).
                line = new string(' ', prefix.Length) + line[prefix.Length..];
            }

            body.Append(line).Append('\n');
        }
    }

    private static IReadOnlyList<MetadataReference> LibraryReferences()
    {
        string frameworkDir = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var paths = new SortedDictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        string tpa = (string?)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")
            ?? throw new InvalidOperationException("The runtime gives no TRUSTED_PLATFORM_ASSEMBLIES list.");
        foreach (string p in tpa.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            if (string.Equals(Path.GetDirectoryName(p), frameworkDir, StringComparison.Ordinal))
            {
                paths.TryAdd(Path.GetFileNameWithoutExtension(p), p);
            }
        }

        string here = AppContext.BaseDirectory;
        string self = Path.GetFileName(typeof(SnippetCompiler).Assembly.Location);
        var queue = new Queue<string>(Directory.GetFiles(here, "Mistral.*.dll")
            .Where(f => !string.Equals(Path.GetFileName(f), self, StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal));
        if (queue.Count == 0)
        {
            throw new InvalidOperationException($"No Mistral.*.dll next to the test assembly in '{here}'.");
        }

        while (queue.TryDequeue(out string? file))
        {
            string name = Path.GetFileNameWithoutExtension(file);
            if (paths.ContainsKey(name))
            {
                continue;
            }

            paths.Add(name, file);
            foreach (string reference in ReferencedAssemblyNames(file))
            {
                string candidate = Path.Combine(here, reference + ".dll");
                if (!paths.ContainsKey(reference) && File.Exists(candidate))
                {
                    queue.Enqueue(candidate);
                }
            }
        }

        return paths.Values.Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToList();
    }

    private static IEnumerable<string> ReferencedAssemblyNames(string file)
    {
        using var stream = File.OpenRead(file);
        using var pe = new PEReader(stream);
        MetadataReader metadata = pe.GetMetadataReader();
        return metadata.AssemblyReferences.Select(h => metadata.GetString(metadata.GetAssemblyReference(h).Name)).ToList();
    }

    /// <summary>
    /// The using directives a line starts with (<c>using A.B;</c>, <c>using static A.B;</c>, <c>using X = A.B;</c>),
    /// possibly several; <c>using var x = …;</c> and <c>using (…)</c> are statements and do not match.
    /// </summary>
    [GeneratedRegex(@"^\s*(using\s+(static\s+)?([A-Za-z_]\w*\s*=\s*)?[A-Za-z_][\w.]*(<[\w.,\s<>]*>)?\s*;\s*)+")]
    private static partial Regex LeadingUsingDirectives();

    [GeneratedRegex(@"using\s+(static\s+)?([A-Za-z_]\w*\s*=\s*)?[A-Za-z_][\w.]*(<[\w.,\s<>]*>)?\s*;")]
    private static partial Regex UsingDirective();
}

/// <summary>What compiling a snippet gave.</summary>
/// <param name="Snippet">The snippet.</param>
/// <param name="Source">The generated C# file.</param>
/// <param name="Errors">The compiler errors (empty when it compiles).</param>
internal sealed record SnippetCompileResult(MarkdownSnippet Snippet, string Source, IReadOnlyList<Diagnostic> Errors)
{
    /// <summary>True when there is no error.</summary>
    public bool Success => Errors.Count == 0;

    /// <summary>
    /// The block's location and each error as "file(line,column): error CSxxxx: message", followed by the markdown line it
    /// points at (or the generated source for errors outside the snippet's text).
    /// </summary>
    public string Report()
    {
        var text = new StringBuilder();
        text.Append($"The ```csharp block at {Snippet.File} line {Snippet.FenceLine} does not compile ({Errors.Count} error(s)):\n");
        var markdownLines = new Dictionary<int, string>();
        foreach (SnippetText part in Snippet.Contexts.Append(new SnippetText(Snippet.Code, Snippet.CodeLine)))
        {
            string[] lines = part.Text.Split('\n');
            for (int i = 0; i < lines.Length; i++)
            {
                markdownLines.TryAdd(part.Line + i, lines[i]);
            }
        }

        foreach (Diagnostic error in Errors)
        {
            FileLinePositionSpan span = error.Location.GetMappedLineSpan();
            if (span.HasMappedPath)
            {
                int line = span.StartLinePosition.Line + 1;
                text.Append($"  {span.Path}({line},{span.StartLinePosition.Character + 1}): error {error.Id}: {error.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}\n");
                if (markdownLines.TryGetValue(line, out string? markdown))
                {
                    text.Append($"      | {markdown.Trim()}\n");
                }
            }
            else
            {
                text.Append($"  (generated wrapper, line {span.StartLinePosition.Line + 1}): error {error.Id}: {error.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}\n");
            }
        }

        if (Errors.Any(e => !e.Location.GetMappedLineSpan().HasMappedPath))
        {
            text.Append("Generated source:\n").Append(Source);
        }

        return text.ToString();
    }
}
