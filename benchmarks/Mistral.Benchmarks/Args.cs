namespace Mistral.Benchmarks;

internal sealed class Args
{
    private readonly Dictionary<string, string> values = new();

    public static Args Parse(string[] args)
    {
        var a = new Args();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("--", StringComparison.Ordinal))
            {
                a.values[args[i][2..]] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
            }
        }

        return a;
    }

    public string Get(string name, string fallback) => values.TryGetValue(name, out var v) ? v : fallback;

    public int GetInt(string name, int fallback) => values.TryGetValue(name, out var v) ? int.Parse(v) : fallback;

    public int[] GetInts(string name, params int[] fallback) =>
        values.TryGetValue(name, out var v) ? v.Split(',').Select(int.Parse).ToArray() : fallback;
}
