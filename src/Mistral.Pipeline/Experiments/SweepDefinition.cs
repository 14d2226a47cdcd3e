using System.Text.RegularExpressions;

namespace Mistral.Pipeline.Experiments;

/// <summary>How a sweep's results table is laid out.</summary>
public enum SweepTableLayout
{
    /// <summary>Sample efficiency when the training fraction varies over a task with labels, else methods.</summary>
    Auto,

    /// <summary>The study's Table 1: training fraction → training samples → accuracy / macro-F1 (+ label-likelihood accuracy).</summary>
    SampleEfficiency,

    /// <summary>The study's Table 2: method (zero-shot, few-shot, fine-tuned, with the swept settings) → the task's quality columns (ROUGE-1/2/L/Lsum).</summary>
    Methods,
}

/// <summary>A named sweep: axes over a base pipeline (<see cref="SweepRunner"/> runs it over a <see cref="MistralPipeline"/>).</summary>
public sealed partial record SweepDefinition
{
    /// <summary>Creates a sweep definition.</summary>
    /// <param name="name">A short name made of letters, digits, '-', '_' and '.' (it names files).</param>
    /// <param name="axes">What varies.</param>
    /// <param name="layout">How the results table is laid out.</param>
    /// <exception cref="ArgumentException">The name is empty or holds other characters, or an axis is invalid.</exception>
    public SweepDefinition(string name, SweepAxes axes, SweepTableLayout layout = SweepTableLayout.Auto)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(axes);
        if (!NamePattern().IsMatch(name))
        {
            throw new ArgumentException($"SweepDefinition name '{name}' may hold only letters, digits, '-', '_' and '.' (it names files).", nameof(name));
        }

        if (!Enum.IsDefined(layout))
        {
            throw new ArgumentException($"SweepDefinition layout {layout} is not a SweepTableLayout value.", nameof(layout));
        }

        Name = name;
        Axes = axes.Validate();
        Layout = layout;
    }

    /// <summary>The sweep's name.</summary>
    public string Name { get; }

    /// <summary>What varies.</summary>
    public SweepAxes Axes { get; }

    /// <summary>How the results table is laid out.</summary>
    public SweepTableLayout Layout { get; }

    /// <summary>The seed of the training-set subsample (the study's: 42).</summary>
    public uint SubsampleSeed { get; init; } = Mistral.Eval.Data.DataSplitter.StudySeed;

    [GeneratedRegex("^[A-Za-z0-9._-]+$")]
    private static partial Regex NamePattern();
}
