using System.Text.RegularExpressions;

namespace Mistral.Peft.Lora;

/// <summary>PEFT's module-name matching for <c>target_modules</c> and <c>exclude_modules</c>.</summary>
internal static class TargetModuleMatcher
{
    /// <summary>Equal to an entry, or ending with "." + entry (PEFT's list matching).</summary>
    public static string? MatchingEntry(string moduleName, IEnumerable<string> entries) =>
        entries.FirstOrDefault(e => moduleName == e || moduleName.EndsWith("." + e, StringComparison.Ordinal));

    /// <summary>Python's <c>re.fullmatch(pattern, name)</c>.</summary>
    public static bool FullMatch(string moduleName, string pattern) =>
        Regex.IsMatch(moduleName, @"\A(?:" + pattern + @")\z", RegexOptions.CultureInvariant);
}
