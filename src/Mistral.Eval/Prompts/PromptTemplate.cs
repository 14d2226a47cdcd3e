using System.Text;

namespace Mistral.Eval.Prompts;

/// <summary>
/// A text with named placeholders written <c>{name}</c> (a letter or underscore, then letters, digits or
/// underscores); <c>{{</c> and <c>}}</c> stand for literal braces, as in Python's <c>str.format</c>.
/// Parsed once; rendering fails, naming the placeholder, when a value is missing or a value is given for a
/// placeholder the template does not have. Everything else is copied byte for byte.
/// </summary>
public sealed class PromptTemplate
{
    private readonly Segment[] _segments;

    /// <summary>Parses a template.</summary>
    /// <param name="name">A name used in error messages (e.g. <c>classification.zero_shot</c>).</param>
    /// <param name="text">The template text.</param>
    /// <exception cref="PromptTemplateException">A brace is unbalanced or a placeholder name is invalid.</exception>
    public PromptTemplate(string name, string text)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(text);
        Name = name;
        Text = text;
        _segments = Parse(name, text);
        Placeholders = _segments.Where(s => s.IsPlaceholder).Select(s => s.Value).Distinct(StringComparer.Ordinal).ToArray();
    }

    /// <summary>The template's name.</summary>
    public string Name { get; }

    /// <summary>The template text as given.</summary>
    public string Text { get; }

    /// <summary>The distinct placeholder names in order of first appearance.</summary>
    public IReadOnlyList<string> Placeholders { get; }

    /// <summary>Renders the template with a value for every placeholder.</summary>
    /// <param name="values">Placeholder name → value; must name exactly the template's placeholders.</param>
    /// <returns>The rendered text.</returns>
    /// <exception cref="PromptTemplateException">A placeholder has no value, or a value names no placeholder.</exception>
    public string Render(IReadOnlyDictionary<string, string> values)
    {
        Validate(values);
        var sb = new StringBuilder(Text.Length + values.Values.Sum(v => v?.Length ?? 0));
        foreach (var s in _segments)
        {
            sb.Append(s.IsPlaceholder ? values[s.Value] : s.Value);
        }

        return sb.ToString();
    }

    /// <summary>Renders with the given (name, value) pairs; see <see cref="Render(IReadOnlyDictionary{string, string})"/>.</summary>
    /// <param name="values">The placeholder values.</param>
    /// <returns>The rendered text.</returns>
    public string Render(params (string Name, string Value)[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var dict = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (n, v) in values)
        {
            if (!dict.TryAdd(n, v))
            {
                throw new PromptTemplateException($"Template '{Name}': a value for {{{n}}} was given twice.", Name, n);
            }
        }

        return Render(dict);
    }

    /// <summary>
    /// Renders a training template as an <see cref="SftExample"/>: the text before the first occurrence of
    /// <paramref name="targetPlaceholder"/> is the prompt, the rest (the target value and any text after it) is the target.
    /// </summary>
    /// <param name="values">Values for every placeholder, the target included.</param>
    /// <param name="targetPlaceholder">The placeholder holding the answer (e.g. <c>label</c> or <c>summary</c>); must occur exactly once.</param>
    /// <returns>The prompt/target pair.</returns>
    /// <exception cref="PromptTemplateException">The target placeholder is absent or occurs more than once, or a value is missing/unknown.</exception>
    public SftExample RenderTraining(IReadOnlyDictionary<string, string> values, string targetPlaceholder)
    {
        ArgumentException.ThrowIfNullOrEmpty(targetPlaceholder);
        int occurrences = _segments.Count(s => s.IsPlaceholder && s.Value == targetPlaceholder);
        if (occurrences != 1)
        {
            throw new PromptTemplateException(
                $"Template '{Name}': target placeholder {{{targetPlaceholder}}} must occur exactly once, found {occurrences}.", Name, targetPlaceholder);
        }

        Validate(values);
        var prompt = new StringBuilder();
        var target = new StringBuilder();
        var current = prompt;
        foreach (var s in _segments)
        {
            if (s.IsPlaceholder && s.Value == targetPlaceholder)
            {
                current = target;
            }

            current.Append(s.IsPlaceholder ? values[s.Value] : s.Value);
        }

        return new SftExample(prompt.ToString(), target.ToString());
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name}: {Text}";

    private void Validate(IReadOnlyDictionary<string, string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        foreach (var p in Placeholders)
        {
            if (!values.TryGetValue(p, out var v))
            {
                throw new PromptTemplateException($"Template '{Name}' needs a value for placeholder {{{p}}}.", Name, p);
            }

            if (v is null)
            {
                throw new PromptTemplateException($"Template '{Name}': the value for placeholder {{{p}}} is null.", Name, p);
            }
        }

        foreach (var key in values.Keys)
        {
            if (!Placeholders.Contains(key, StringComparer.Ordinal))
            {
                throw new PromptTemplateException(
                    $"Template '{Name}' has no placeholder {{{key}}}; its placeholders are {string.Join(", ", Placeholders.Select(p => "{" + p + "}"))}.",
                    Name,
                    key);
            }
        }
    }

    private static Segment[] Parse(string name, string text)
    {
        var segments = new List<Segment>();
        var literal = new StringBuilder();
        int i = 0;
        while (i < text.Length)
        {
            char c = text[i];
            if (c == '{')
            {
                if (i + 1 < text.Length && text[i + 1] == '{')
                {
                    literal.Append('{');
                    i += 2;
                    continue;
                }

                int close = text.IndexOf('}', i + 1);
                if (close < 0)
                {
                    throw new PromptTemplateException($"Template '{name}': '{{' at offset {i} is never closed (write '{{{{' for a literal brace).", name, null);
                }

                var placeholder = text.Substring(i + 1, close - i - 1);
                if (!IsValidName(placeholder))
                {
                    throw new PromptTemplateException(
                        $"Template '{name}': '{{{placeholder}}}' at offset {i} is not a valid placeholder name (letters, digits, '_', not starting with a digit).", name, placeholder);
                }

                if (literal.Length > 0)
                {
                    segments.Add(new Segment(literal.ToString(), false));
                    literal.Clear();
                }

                segments.Add(new Segment(placeholder, true));
                i = close + 1;
            }
            else if (c == '}')
            {
                if (i + 1 < text.Length && text[i + 1] == '}')
                {
                    literal.Append('}');
                    i += 2;
                    continue;
                }

                throw new PromptTemplateException($"Template '{name}': unmatched '}}' at offset {i} (write '}}}}' for a literal brace).", name, null);
            }
            else
            {
                literal.Append(c);
                i++;
            }
        }

        if (literal.Length > 0)
        {
            segments.Add(new Segment(literal.ToString(), false));
        }

        return segments.ToArray();
    }

    private static bool IsValidName(string s)
    {
        if (s.Length == 0 || !(char.IsAsciiLetter(s[0]) || s[0] == '_'))
        {
            return false;
        }

        foreach (char c in s)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '_'))
            {
                return false;
            }
        }

        return true;
    }

    private readonly record struct Segment(string Value, bool IsPlaceholder);
}
