using System.Text.RegularExpressions;

namespace Mistral.Docs.Tests;

/// <summary>
/// Finds the C# blocks of a markdown text: fenced blocks (``` or ~~~, CommonMark's rules for fence length and up to
/// three spaces of indentation) whose info string starts with <c>csharp</c>, <c>cs</c> or <c>c#</c>.
/// </summary>
/// <remarks>
/// <para>HTML comments right before a block (blank lines and other comments may come between) give directives:</para>
/// <list type="bullet">
/// <item><c>&lt;!-- snippet-context: string folder = "model"; Tensor ids = null!; --&gt;</c> — C# put before the block when
/// it is compiled (declarations of what a reader supplies; <c>using</c> lines are hoisted like the block's). It may span
/// lines, and several may precede one block.</item>
/// <item><c>&lt;!-- snippet: skip the reason --&gt;</c> — the block is not compiled; the reason is required.</item>
/// </list>
/// <para>A comment whose text starts with "snippet" but is neither, or a directive not followed by a C# block, is an
/// error, so that a typo cannot silently stop a block from being checked.</para>
/// </remarks>
internal static partial class MarkdownSnippets
{
    private const string ContextDirective = "snippet-context:";
    private const string SkipDirective = "snippet: skip";

    /// <summary>The C# blocks of <paramref name="markdown"/>.</summary>
    /// <param name="markdown">The markdown text.</param>
    /// <param name="file">The file name used in messages and in <see cref="MarkdownSnippet.File"/>.</param>
    /// <returns>The blocks, in file order.</returns>
    /// <exception cref="FormatException">A malformed or misplaced directive, or an unclosed C# block (file and line named).</exception>
    public static IReadOnlyList<MarkdownSnippet> Parse(string markdown, string file)
    {
        ArgumentNullException.ThrowIfNull(markdown);
        ArgumentNullException.ThrowIfNull(file);
        string[] lines = markdown.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var snippets = new List<MarkdownSnippet>();
        var contexts = new List<SnippetText>();
        string? skip = null;
        int firstDirectiveLine = 0;
        int i = 0;
        while (i < lines.Length)
        {
            string line = lines[i];
            Match fence = OpeningFence().Match(line);
            if (fence.Success)
            {
                string marker = fence.Groups["fence"].Value;
                string language = fence.Groups["info"].Value.Trim().Split(' ', 2)[0].ToLowerInvariant();
                int close = FindClosingFence(lines, i + 1, marker);
                bool isCSharp = language is "csharp" or "cs" or "c#";
                if (isCSharp && close < 0)
                {
                    throw new FormatException($"{file}({i + 1}): the ```{language} block is never closed.");
                }

                int end = close < 0 ? lines.Length : close;
                if (isCSharp)
                {
                    string code = string.Join('\n', lines[(i + 1)..end]);
                    snippets.Add(new MarkdownSnippet(file, i + 1, code, contexts.ToList(), skip));
                }
                else if (firstDirectiveLine > 0)
                {
                    throw new FormatException(
                        $"{file}({firstDirectiveLine}): a snippet directive must come right before a ```csharp block; it precedes a ```{language} block at line {i + 1}.");
                }

                contexts.Clear();
                skip = null;
                firstDirectiveLine = 0;
                i = end + 1;
                continue;
            }

            int start = line.IndexOf("<!--", StringComparison.Ordinal);
            if (start >= 0 && line[..start].Trim().Length == 0)
            {
                int commentLine = i;
                string text = ReadComment(lines, ref i, start + 4);
                string trimmed = text.Trim();
                if (trimmed.StartsWith("snippet", StringComparison.Ordinal))
                {
                    firstDirectiveLine = firstDirectiveLine == 0 ? commentLine + 1 : firstDirectiveLine;
                    if (trimmed.StartsWith(ContextDirective, StringComparison.Ordinal))
                    {
                        // The text keeps its position: it starts on the comment's line, after the directive's name.
                        int at = text.IndexOf(ContextDirective, StringComparison.Ordinal) + ContextDirective.Length;
                        contexts.Add(new SnippetText(text[at..], commentLine + 1));
                    }
                    else if (trimmed.StartsWith(SkipDirective, StringComparison.Ordinal)
                             && (trimmed.Length == SkipDirective.Length || char.IsWhiteSpace(trimmed[SkipDirective.Length])))
                    {
                        string reason = trimmed[SkipDirective.Length..].Trim();
                        if (reason.Length == 0)
                        {
                            throw new FormatException($"{file}({commentLine + 1}): '<!-- {SkipDirective} -->' needs a reason: '<!-- {SkipDirective} why it cannot compile -->'.");
                        }

                        skip = reason;
                    }
                    else
                    {
                        throw new FormatException(
                            $"{file}({commentLine + 1}): unknown snippet directive '<!--{text}-->'; use '<!-- {ContextDirective} C# declarations -->' or '<!-- {SkipDirective} reason -->'.");
                    }
                }

                continue;
            }

            if (line.Trim().Length > 0 && firstDirectiveLine > 0)
            {
                throw new FormatException(
                    $"{file}({firstDirectiveLine}): a snippet directive must come right before a ```csharp block, but line {i + 1} is text.");
            }

            i++;
        }

        if (firstDirectiveLine > 0)
        {
            throw new FormatException($"{file}({firstDirectiveLine}): a snippet directive must come right before a ```csharp block, but the file ends.");
        }

        return snippets;
    }

    // Reads an HTML comment that starts at lines[i][from..] and returns its text (newlines kept); i moves past it.
    private static string ReadComment(string[] lines, ref int i, int from)
    {
        var text = new System.Text.StringBuilder();
        string rest = lines[i][from..];
        while (true)
        {
            int end = rest.IndexOf("-->", StringComparison.Ordinal);
            if (end >= 0)
            {
                text.Append(rest[..end]);
                i++;
                return text.ToString();
            }

            text.Append(rest).Append('\n');
            i++;
            if (i >= lines.Length)
            {
                return text.ToString();
            }

            rest = lines[i];
        }
    }

    private static int FindClosingFence(string[] lines, int from, string marker)
    {
        for (int j = from; j < lines.Length; j++)
        {
            Match m = ClosingFence().Match(lines[j]);
            if (m.Success && m.Groups["fence"].Value[0] == marker[0] && m.Groups["fence"].Value.Length >= marker.Length)
            {
                return j;
            }
        }

        return -1;
    }

    [GeneratedRegex(@"^ {0,3}(?<fence>`{3,}|~{3,})(?<info>[^`]*)$")]
    private static partial Regex OpeningFence();

    [GeneratedRegex(@"^ {0,3}(?<fence>`{3,}|~{3,})\s*$")]
    private static partial Regex ClosingFence();
}
