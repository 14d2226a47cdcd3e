namespace Mistral.Eval.Prompts;

/// <summary>The class list as the study puts it in its prompts: distinct labels in order of first appearance, joined by <c>", "</c>.</summary>
public static class ClassList
{
    /// <summary>The distinct labels in order of first appearance (ordinal comparison), as pandas' <c>unique()</c> returns them.</summary>
    /// <param name="labels">The training labels, in dataset order.</param>
    /// <returns>The distinct labels.</returns>
    public static IReadOnlyList<string> FromLabels(IEnumerable<string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        return labels.Distinct(StringComparer.Ordinal).ToArray();
    }

    /// <summary>The value of <c>{newsgroup_classes}</c>: the distinct labels in order of first appearance joined by <c>", "</c>.</summary>
    /// <param name="labels">The training labels, in dataset order (duplicates allowed).</param>
    /// <returns>The rendered class list.</returns>
    public static string Render(IEnumerable<string> labels) => string.Join(", ", FromLabels(labels));
}
