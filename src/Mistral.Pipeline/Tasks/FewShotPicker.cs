using Mistral.Eval.Data;
using Mistral.Eval.Prompts;

namespace Mistral.Pipeline;

/// <summary>Chooses the few-shot examples of a mode from the context's pool.</summary>
internal static class FewShotPicker
{
    public static IReadOnlyList<Example> Pick(EvaluationMode mode, TaskContext context, bool hasLabels)
    {
        var pool = mode.Pool ?? context.FewShotPool;
        if (pool.Count == 0)
        {
            throw new InvalidOperationException(
                $"{mode} needs examples to show: pass a pool to EvaluationMode.FewShot(..., pool: examples) or evaluate a pipeline trained on examples.");
        }

        int k = Math.Min(mode.Shots, pool.Count);
        return mode.Selection switch
        {
            FewShotSelection.FirstPerLabel when hasLabels => FewShotSelector.FirstPerLabel(pool).Take(mode.Shots).ToArray(),
            FewShotSelection.RandomK => FewShotSelector.RandomK(pool, k, mode.Seed),
            _ => FewShotSelector.FirstK(pool, k),
        };
    }
}
