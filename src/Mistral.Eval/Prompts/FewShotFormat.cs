using Mistral.Eval.Data;

namespace Mistral.Eval.Prompts;

/// <summary>How one few-shot example is written: a template and which of its placeholders take the example's input and target.</summary>
public sealed record FewShotFormat
{
    /// <summary>Creates the format, checking that the template has exactly these two placeholders.</summary>
    /// <param name="template">The per-example template.</param>
    /// <param name="inputPlaceholder">The placeholder that receives <see cref="Example.Input"/>.</param>
    /// <param name="targetPlaceholder">The placeholder that receives <see cref="Example.Target"/>.</param>
    /// <exception cref="ArgumentException">The template's placeholders are not exactly the two named.</exception>
    public FewShotFormat(PromptTemplate template, string inputPlaceholder, string targetPlaceholder)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentException.ThrowIfNullOrEmpty(inputPlaceholder);
        ArgumentException.ThrowIfNullOrEmpty(targetPlaceholder);
        var expected = new[] { inputPlaceholder, targetPlaceholder }.Order(StringComparer.Ordinal);
        if (inputPlaceholder == targetPlaceholder || !template.Placeholders.Order(StringComparer.Ordinal).SequenceEqual(expected))
        {
            throw new ArgumentException(
                $"Few-shot template '{template.Name}' must have exactly the placeholders {{{inputPlaceholder}}} and {{{targetPlaceholder}}}; it has {string.Join(", ", template.Placeholders.Select(p => "{" + p + "}"))}.",
                nameof(template));
        }

        Template = template;
        InputPlaceholder = inputPlaceholder;
        TargetPlaceholder = targetPlaceholder;
    }

    /// <summary>The per-example template.</summary>
    public PromptTemplate Template { get; }

    /// <summary>The placeholder receiving the example's input.</summary>
    public string InputPlaceholder { get; }

    /// <summary>The placeholder receiving the example's target.</summary>
    public string TargetPlaceholder { get; }

    /// <summary>Renders one example block.</summary>
    /// <param name="example">The example.</param>
    /// <returns>The block text.</returns>
    public string Render(Example example)
    {
        ArgumentNullException.ThrowIfNull(example);
        return Template.Render((InputPlaceholder, example.Input), (TargetPlaceholder, example.Target));
    }

    /// <summary>Renders each example as a block (the study concatenates the blocks with nothing between them).</summary>
    /// <param name="examples">The examples, in prompt order.</param>
    /// <returns>One block per example.</returns>
    public IReadOnlyList<string> RenderBlocks(IEnumerable<Example> examples)
    {
        ArgumentNullException.ThrowIfNull(examples);
        return examples.Select(Render).ToArray();
    }

    /// <summary>Renders and concatenates the blocks: the value of <c>{few_shot_samples}</c>.</summary>
    /// <param name="examples">The examples, in prompt order.</param>
    /// <returns>The concatenated blocks.</returns>
    public string RenderAll(IEnumerable<Example> examples) => string.Concat(RenderBlocks(examples));
}
