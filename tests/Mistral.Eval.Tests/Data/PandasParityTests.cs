using System.Text.Json;
using Mistral.Eval.Data;

namespace Mistral.Eval.Tests.Data;

/// <summary>Our readers + the study's cleaning rule keep exactly the rows pandas 1.5.3 keeps (tools/eval_data/make_fixtures.py).</summary>
public class PandasParityTests
{
    private static readonly JsonElement Expected =
        JsonDocument.Parse(File.ReadAllText(EvalDataFixtures.PathOf("pandas_expected.json"))).RootElement;

    [Theory]
    [InlineData("newsgroups_sample.jsonl", "text", "label")]
    [InlineData("samsum_sample.csv", "dialogue", "summary")]
    public async Task Kept_rows_and_dropped_count_match_pandas(string file, string input, string target)
    {
        var r = await new DatasetReader().ReadAsync(EvalDataFixtures.PathOf(file), new ColumnMapping(input, target), ReadOptions.StudyCleaning);
        var e = Expected.GetProperty(file);
        var kept = e.GetProperty("kept").EnumerateArray().Select(p => (p[0].GetString()!, p[1].GetString()!)).ToArray();
        r.Examples.Select(x => (x.Input, x.Target)).Should().Equal(kept);
        r.SkippedCount.Should().Be(e.GetProperty("dropped").GetInt32());
    }
}
