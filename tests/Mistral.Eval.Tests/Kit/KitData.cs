using System.Globalization;
using System.Text;
using System.Text.Json;
using Mistral.Eval.Data;

namespace Mistral.Eval.Tests.Kit;

/// <summary>
/// The committed kit datasets under kit/data (built by tools/kit/build_debian_kit.py from Debian bookworm's
/// archive metadata) and their manifest.json, found by walking up from the test binaries.
/// </summary>
internal static class KitData
{
    public static readonly string[] Tasks = ["classification", "summarization"];

    public static readonly string[] Splits = ["train", "validation", "test"];

    public static string Directory { get; } = Find();

    public static JsonElement Manifest { get; } =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "manifest.json"))).RootElement;

    public static string PathOf(string task, string split) => Path.Combine(Directory, task, split + ".parquet");

    public static ColumnMapping MappingOf(string task) =>
        task == "classification" ? ColumnMapping.Classification : ColumnMapping.Summarization;

    /// <summary>The manifest's entry for one file ("classification/train.parquet").</summary>
    public static JsonElement FileEntry(string task, string split) => Manifest.GetProperty("files").GetProperty($"{task}/{split}.parquet");

    /// <summary>Reads one file's input column paired with another column (e.g. "source") through the study's reader.</summary>
    public static async Task<IReadOnlyList<Example>> ReadAsync(string task, string split, string? targetColumn = null)
    {
        var mapping = MappingOf(task);
        if (targetColumn is not null)
        {
            mapping = new ColumnMapping(mapping.InputColumn, targetColumn);
        }

        var result = await new DatasetReader().ReadAsync(PathOf(task, split), mapping, ReadOptions.StudyCleaning);
        result.SkippedCount.Should().Be(0, $"{task}/{split} has no null or non-string {mapping.InputColumn}/{mapping.TargetColumn}");
        return result.Examples;
    }

    /// <summary>
    /// The builder's key for near-exact duplicates: lowercase, every character of Unicode category P*
    /// (punctuation), N* (numbers) or S* (symbols) removed, whitespace runs collapsed to one space, trimmed.
    /// </summary>
    public static string Normalize(string text)
    {
        var kept = new StringBuilder(text.Length);
        foreach (var rune in text.ToLowerInvariant().EnumerateRunes())
        {
            var category = Rune.GetUnicodeCategory(rune);
            if (!IsPunctuationNumberOrSymbol(category))
            {
                kept.Append(rune.ToString());
            }
        }

        return string.Join(' ', kept.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    private static bool IsPunctuationNumberOrSymbol(UnicodeCategory c) => c is
        UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
        or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
        or UnicodeCategory.OtherPunctuation or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber
        or UnicodeCategory.OtherNumber or UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol
        or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol;

    private static string Find()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            var candidate = Path.Combine(dir.FullName, "kit", "data");
            if (File.Exists(Path.Combine(candidate, "manifest.json")))
            {
                return candidate;
            }

            dir = dir.Parent;
        }

        throw new DirectoryNotFoundException("kit/data/manifest.json not found above " + AppContext.BaseDirectory);
    }
}
