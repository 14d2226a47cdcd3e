using System.Text.RegularExpressions;

namespace Mistral.Peft.Lora;

/// <summary>PEFT's module-name matching for <c>target_modules</c> and <c>exclude_modules</c>.</summary>
internal static class TargetModuleMatcher
{
    /// <summary>How long one pattern may take to match one module name before it is rejected (catastrophic backtracking).</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(1);

    /// <summary>Module names of a Mistral model a pattern is tried against when a config is read, so a pathological one fails there.</summary>
    public static readonly IReadOnlyList<string> RepresentativeNames =
    [
        "model.layers.0.self_attn.q_proj", "model.layers.31.self_attn.o_proj", "model.layers.10.mlp.gate_proj",
        "model.layers.123.mlp.down_proj", "lm_head",
    ];

    /// <summary>Equal to an entry, or ending with "." + entry (PEFT's list matching).</summary>
    public static string? MatchingEntry(string moduleName, IEnumerable<string> entries) =>
        entries.FirstOrDefault(e => moduleName == e || moduleName.EndsWith("." + e, StringComparison.Ordinal));

    /// <summary>Python's <c>re.fullmatch(pattern, name)</c>, bounded by <see cref="MatchTimeout"/>.</summary>
    /// <exception cref="ArgumentException">The pattern took longer than <see cref="MatchTimeout"/> on the name; the message names both.</exception>
    public static bool FullMatch(string moduleName, string pattern)
    {
        try
        {
            return Regex.IsMatch(moduleName, @"\A(?:" + pattern + @")\z", RegexOptions.CultureInvariant, MatchTimeout);
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new ArgumentException(
                $"The target_modules pattern '{pattern}' took longer than {MatchTimeout.TotalSeconds:0.#} s to match module name '{moduleName}' "
                + "(catastrophic backtracking, e.g. nested quantifiers such as (\\w+)*); simplify it or list the module names.", "pattern", e);
        }
    }
}
