using System.Text.Json;

namespace Mistral.Eval.Tests.Metrics;

/// <summary>Locates tests/fixtures/eval-metrics from the test binaries' folder.</summary>
internal static class MetricsFixtures
{
    public static string PathOf(params string[] parts)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "fixtures", "eval-metrics");
            if (Directory.Exists(candidate))
            {
                return Path.Combine([candidate, .. parts]);
            }
        }

        throw new DirectoryNotFoundException("tests/fixtures/eval-metrics not found above " + AppContext.BaseDirectory);
    }

    public static JsonElement Json(string name) =>
        JsonDocument.Parse(File.ReadAllText(PathOf(name))).RootElement;

    /// <summary>Reads a number, where JSON null stands for NaN.</summary>
    public static double Number(JsonElement element) =>
        element.ValueKind == JsonValueKind.Null ? double.NaN : element.GetDouble();
}
