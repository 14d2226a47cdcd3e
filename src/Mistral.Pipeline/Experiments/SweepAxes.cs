using System.Globalization;

namespace Mistral.Pipeline.Experiments;

/// <summary>
/// What a sweep varies. Each axis left null keeps the base pipeline's value; every combination of the given values is one
/// run (axes that do not apply to a mode are dropped for it: zero- and few-shot runs train nothing, and zero-shot uses no
/// training data, so they collapse to one run per distinct configuration).
/// </summary>
public sealed record SweepAxes
{
    /// <summary>
    /// Fractions of the training set to train on, in (0, 1]: a stratified subsample by label (scikit-learn's
    /// <c>train_test_split(stratify=…, train_size=f, random_state=42)</c>) for tasks with labels, a random one
    /// (<c>train_test_split(train_size=f, random_state=42)</c>) otherwise; 1 keeps the whole set. Null: the whole set.
    /// </summary>
    public IReadOnlyList<double>? TrainingFractions { get; init; }

    /// <summary>LoRA ranks; null keeps the base pipeline's.</summary>
    public IReadOnlyList<int>? Ranks { get; init; }

    /// <summary>LoRA alphas; null keeps the base pipeline's.</summary>
    public IReadOnlyList<double>? Alphas { get; init; }

    /// <summary>LoRA dropouts in [0, 1); null keeps the base pipeline's.</summary>
    public IReadOnlyList<double>? Dropouts { get; init; }

    /// <summary>Sets of LoRA target modules (e.g. <c>["q_proj", "v_proj"]</c>); null keeps the base pipeline's.</summary>
    public IReadOnlyList<IReadOnlyList<string>>? TargetModules { get; init; }

    /// <summary>Training epochs; null keeps the base pipeline's.</summary>
    public IReadOnlyList<int>? Epochs { get; init; }

    /// <summary>Learning rates; null keeps the base pipeline's.</summary>
    public IReadOnlyList<double>? LearningRates { get; init; }

    /// <summary>
    /// How each configuration is evaluated: <see cref="EvaluationMode.ZeroShot"/>, <see cref="EvaluationMode.FewShot"/>
    /// (its pool is the run's training subset, so leave <see cref="EvaluationMode.Pool"/> null) or
    /// <see cref="EvaluationMode.FineTuned"/> (train, then evaluate with the adapter). Null: fine-tuned only.
    /// </summary>
    public IReadOnlyList<EvaluationMode>? Modes { get; init; }

    /// <summary>Checks every axis; throws naming the first invalid one.</summary>
    /// <returns>This instance.</returns>
    /// <exception cref="ArgumentException">An axis is empty, holds a duplicate or an out-of-range value.</exception>
    public SweepAxes Validate()
    {
        Check(TrainingFractions, nameof(TrainingFractions), f => f > 0 && f <= 1, "must be in (0, 1]");
        Check(Ranks, nameof(Ranks), r => r >= 1, "must be at least 1");
        Check(Alphas, nameof(Alphas), a => a > 0 && double.IsFinite(a), "must be positive");
        Check(Dropouts, nameof(Dropouts), d => d >= 0 && d < 1, "must be in [0, 1)");
        Check(Epochs, nameof(Epochs), e => e >= 1, "must be at least 1");
        Check(LearningRates, nameof(LearningRates), lr => lr > 0 && double.IsFinite(lr), "must be positive");
        if (TargetModules is not null)
        {
            if (TargetModules.Count == 0)
            {
                throw new ArgumentException("SweepAxes.TargetModules is empty; leave it null to keep the base pipeline's targets.", nameof(TargetModules));
            }

            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < TargetModules.Count; i++)
            {
                var set = TargetModules[i];
                if (set is null || set.Count == 0 || set.Any(string.IsNullOrWhiteSpace))
                {
                    throw new ArgumentException($"SweepAxes.TargetModules[{i}] must be a non-empty list of module names.", nameof(TargetModules));
                }

                if (!seen.Add(string.Join(",", set.Order(StringComparer.Ordinal))))
                {
                    throw new ArgumentException($"SweepAxes.TargetModules[{i}] ({string.Join(", ", set)}) appears twice.", nameof(TargetModules));
                }
            }
        }

        if (Modes is not null)
        {
            if (Modes.Count == 0)
            {
                throw new ArgumentException("SweepAxes.Modes is empty; leave it null for fine-tuned only.", nameof(Modes));
            }

            for (int i = 0; i < Modes.Count; i++)
            {
                if (Modes[i] is null)
                {
                    throw new ArgumentException($"SweepAxes.Modes[{i}] is null.", nameof(Modes));
                }

                if (Modes[i].Pool is not null)
                {
                    throw new ArgumentException($"SweepAxes.Modes[{i}] ({Modes[i]}) has its own few-shot pool; a sweep draws the pool from each run's training subset, so leave Pool null.", nameof(Modes));
                }
            }

            var duplicate = Modes.GroupBy(m => m.ToString()).FirstOrDefault(g => g.Count() > 1);
            if (duplicate is not null)
            {
                throw new ArgumentException($"SweepAxes.Modes holds {duplicate.Key} twice.", nameof(Modes));
            }
        }

        return this;
    }

    /// <summary>How many combinations the axes make (before runs that do not apply to a mode collapse).</summary>
    public int Combinations =>
        Count(TrainingFractions) * Count(Ranks) * Count(Alphas) * Count(Dropouts) * Count(TargetModules) * Count(Epochs) * Count(LearningRates) * Count(Modes);

    private static int Count<T>(IReadOnlyList<T>? axis) => axis?.Count ?? 1;

    private static void Check<T>(IReadOnlyList<T>? axis, string name, Func<T, bool> valid, string rule)
        where T : IFormattable
    {
        if (axis is null)
        {
            return;
        }

        if (axis.Count == 0)
        {
            throw new ArgumentException($"SweepAxes.{name} is empty; leave it null to keep the base pipeline's value.", name);
        }

        for (int i = 0; i < axis.Count; i++)
        {
            if (!valid(axis[i]))
            {
                throw new ArgumentException($"SweepAxes.{name}[{i}] = {axis[i].ToString(null, CultureInfo.InvariantCulture)} {rule}.", name);
            }
        }

        var duplicate = axis.GroupBy(v => v).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new ArgumentException($"SweepAxes.{name} holds {duplicate.Key.ToString(null, CultureInfo.InvariantCulture)} twice.", name);
        }
    }
}
