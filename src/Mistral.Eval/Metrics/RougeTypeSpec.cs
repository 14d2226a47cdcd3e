namespace Mistral.Eval.Metrics;

/// <summary>A parsed ROUGE type name.</summary>
internal readonly record struct RougeTypeSpec(string Name, RougeKind Kind, int N)
{
    /// <summary>Parses a name already checked by <see cref="RougeOptions.Validate"/>.</summary>
    public static RougeTypeSpec Parse(string name) => name switch
    {
        "rougeL" => new(name, RougeKind.Lcs, 0),
        "rougeLsum" => new(name, RougeKind.LcsSummary, 0),
        _ => new(name, RougeKind.NGram, name[5] - '0'),
    };
}
