using System.Globalization;
using Mistral.Eval.Data;

namespace Mistral.Pipeline;

/// <summary>
/// One of the study's ways to ask the model: <see cref="ZeroShot"/>, <see cref="FewShot"/> or <see cref="FineTuned"/>.
/// Zero- and few-shot run on the base model (a trained adapter is switched off for the call), fine-tuned on the model with
/// its adapter, so one loaded pipeline compares all three on the same test set.
/// </summary>
public sealed record EvaluationMode
{
    private EvaluationMode(EvaluationModeKind kind)
    {
        Kind = kind;
    }

    /// <summary>Which of the three.</summary>
    public EvaluationModeKind Kind { get; }

    /// <summary>Few-shot: the most examples to put in a prompt (fewer when the context cannot hold them).</summary>
    public int Shots { get; init; }

    /// <summary>Few-shot: how examples are chosen.</summary>
    public FewShotSelection Selection { get; init; }

    /// <summary>Few-shot with <see cref="FewShotSelection.RandomK"/>: the seed.</summary>
    public uint Seed { get; init; } = 42;

    /// <summary>Few-shot: the examples to choose from; null uses the pipeline's training examples.</summary>
    public IReadOnlyList<Example>? Pool { get; init; }

    /// <summary>Zero-shot: the task's instruction prompt, base model.</summary>
    /// <returns>The mode.</returns>
    public static EvaluationMode ZeroShot() => new(EvaluationModeKind.ZeroShot);

    /// <summary>Few-shot: up to <paramref name="shots"/> examples from <paramref name="pool"/> (or the training examples), base model.</summary>
    /// <param name="shots">The most examples per prompt; at least 1 (the study: one per label for classification, 2 for summarization).</param>
    /// <param name="selection">How examples are chosen.</param>
    /// <param name="pool">The examples to choose from; null for the pipeline's training examples.</param>
    /// <param name="seed">Seed of <see cref="FewShotSelection.RandomK"/>.</param>
    /// <returns>The mode.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shots"/> is below 1.</exception>
    public static EvaluationMode FewShot(int shots, FewShotSelection selection = FewShotSelection.FirstPerLabel, IReadOnlyList<Example>? pool = null, uint seed = 42)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shots, 1);
        if (!Enum.IsDefined(selection))
        {
            throw new ArgumentOutOfRangeException(nameof(selection), selection, "Unknown FewShotSelection.");
        }

        return new(EvaluationModeKind.FewShot) { Shots = shots, Selection = selection, Pool = pool, Seed = seed };
    }

    /// <summary>Fine-tuned: the fine-tuning format's inference prompt with the adapter (trained or loaded).</summary>
    /// <returns>The mode.</returns>
    public static EvaluationMode FineTuned() => new(EvaluationModeKind.FineTuned);

    /// <summary>Whether the adapter is used (fine-tuned) or switched off (zero- and few-shot).</summary>
    public bool UsesAdapter => Kind == EvaluationModeKind.FineTuned;

    /// <summary>A short name: "zero-shot", "few-shot (k=2, FirstK)" or "fine-tuned".</summary>
    /// <returns>The name.</returns>
    public override string ToString() => Kind switch
    {
        EvaluationModeKind.ZeroShot => "zero-shot",
        EvaluationModeKind.FewShot => string.Create(CultureInfo.InvariantCulture, $"few-shot (k={Shots}, {Selection})"),
        _ => "fine-tuned",
    };
}
