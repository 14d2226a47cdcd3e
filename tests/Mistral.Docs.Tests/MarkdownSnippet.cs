namespace Mistral.Docs.Tests;

/// <summary>A fenced C# block of a markdown file, with the snippet directives written right before it.</summary>
/// <param name="File">The markdown file, as shown in messages (relative to the repository root, '/'-separated).</param>
/// <param name="FenceLine">1-based line of the opening fence.</param>
/// <param name="Code">The lines between the fences, joined with '\n'.</param>
/// <param name="Contexts">The <c>snippet-context</c> texts, in order, prepended to the code when it is compiled.</param>
/// <param name="SkipReason">The reason of a <c>snippet: skip</c> directive; null when the block is compiled.</param>
internal sealed record MarkdownSnippet(string File, int FenceLine, string Code, IReadOnlyList<SnippetText> Contexts, string? SkipReason)
{
    /// <summary>1-based line of the first code line.</summary>
    public int CodeLine => FenceLine + 1;

    /// <inheritdoc />
    public override string ToString() => $"{File}:{FenceLine}";
}

/// <summary>A piece of markdown text and the 1-based line its first character is on.</summary>
internal sealed record SnippetText(string Text, int Line);
