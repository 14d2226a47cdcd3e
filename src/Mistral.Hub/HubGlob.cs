using System.Text;
using System.Text.RegularExpressions;

namespace Mistral.Hub;

/// <summary>Python's <c>fnmatch</c> as <c>huggingface_hub.utils.filter_repo_objects</c> uses it.</summary>
internal static class HubGlob
{
    public static bool IsMatch(string path, string pattern) => ToRegex(pattern).IsMatch(path);

    public static IEnumerable<string> Filter(IEnumerable<string> paths, IReadOnlyList<string>? allow, IReadOnlyList<string>? ignore)
    {
        Regex[]? a = allow?.Select(ToRegex).ToArray();
        Regex[] i = (ignore ?? []).Select(ToRegex).ToArray();
        return paths.Where(p => (a is null || a.Any(r => r.IsMatch(p))) && !i.Any(r => r.IsMatch(p)));
    }

    /// <summary>Translates like <c>fnmatch.translate</c>: <c>*</c> any run (slashes too), <c>?</c> one char, <c>[seq]</c>, <c>[!seq]</c>.</summary>
    public static Regex ToRegex(string pattern)
    {
        if (pattern.EndsWith('/'))
        {
            pattern += "*";
        }

        var sb = new StringBuilder("^");
        for (int k = 0; k < pattern.Length; k++)
        {
            char c = pattern[k];
            switch (c)
            {
                case '*':
                    sb.Append(".*");
                    break;
                case '?':
                    sb.Append('.');
                    break;
                case '[':
                    int j = k + 1;
                    if (j < pattern.Length && pattern[j] == '!') j++;
                    if (j < pattern.Length && pattern[j] == ']') j++;
                    while (j < pattern.Length && pattern[j] != ']') j++;
                    if (j >= pattern.Length)
                    {
                        sb.Append("\\[");
                        break;
                    }

                    string set = pattern[(k + 1)..j].Replace("\\", "\\\\");
                    if (set.StartsWith('!')) set = "^" + set[1..];
                    else if (set.StartsWith('^')) set = "\\" + set;
                    sb.Append('[').Append(set).Append(']');
                    k = j;
                    break;
                default:
                    sb.Append(Regex.Escape(c.ToString()));
                    break;
            }
        }

        return new Regex(sb.Append('$').ToString(), RegexOptions.Singleline | RegexOptions.CultureInvariant);
    }
}
