using Mistral.Eval.Data;
using Mistral.Eval.Tests.Data;

namespace Mistral.Eval.Tests.Reliability;

/// <summary>
/// Issue 11 §4: JSONL <c>"\ud800"</c> (a lone surrogate escape, valid JSON syntax but not Unicode text) is a
/// malformed record under <see cref="ReadOptions.MalformedRecords"/>: skipped and counted when skipping, an error
/// naming the file, line and key otherwise — never a bare InvalidOperationException.
/// </summary>
public class LoneSurrogateTests
{
    private const string Lines =
        "{\"text\":\"fine\",\"label\":\"a\"}\n"
        + "{\"text\":\"bad \\ud800 here\",\"label\":\"a\"}\n"
        + "{\"text\":\"ok\",\"label\":\"\\udc00\"}\n"
        + "{\"text\":\"pair \\ud83d\\ude00\",\"label\":\"b\",\"other\":\"\\ud800\"}\n"
        + "{\"text\":\"key\",\"label\":\"c\",\"\\ud800\":1}\n";

    private readonly DatasetReader _reader = new();

    [Fact]
    public async Task Skipped_and_counted_when_malformed_records_are_skipped()
    {
        using var dir = new TempDir();
        var path = dir.File("s.jsonl", Lines);
        var r = await _reader.ReadAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning with { MalformedRecords = RowErrorPolicy.Skip });

        r.Examples.Select(e => (e.Input, e.Target, e.SourceRow)).Should().Equal(
            ("fine", "a", (long?)1), ("pair \U0001F600", "b", (long?)4), ("key", "c", (long?)5));
        r.SkipCounts[SkipReason.MalformedRecord].Should().Be(2);
        r.SkippedRows.Select(s => (s.Row, s.Column, s.Reason)).Should().Equal((2L, "text", SkipReason.MalformedRecord), (3L, "label", SkipReason.MalformedRecord));
        r.SkippedRows[0].Message.Should().StartWith($"'{path}', line 2, column 'text': the string is not valid Unicode (a lone surrogate escape such as \\ud800); expected text");
    }

    [Fact]
    public async Task An_error_naming_file_line_and_key_otherwise()
    {
        using var dir = new TempDir();
        var path = dir.File("s.jsonl", Lines);
        foreach (var options in new[] { ReadOptions.Strict, ReadOptions.StudyCleaning })
        {
            var act = () => _reader.ReadAsync(path, ColumnMapping.Classification, options);
            var e = (await act.Should().ThrowAsync<DatasetException>()).Which;
            (e.FilePath, e.Row, e.Column).Should().Be((path, 2L, "text"));
            e.Message.Should().StartWith($"'{path}', line 2, column 'text': the string is not valid Unicode");
        }
    }
}
