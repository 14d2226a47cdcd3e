using Mistral.Eval.Data;
using Mistral.Eval.Tests.Data;

namespace Mistral.Eval.Tests.Reliability;

/// <summary>
/// Issue 11 §3: a huge JSONL/CSV line (a sparse 2 GiB file, a link to /dev/zero) is an error naming the file and
/// line after at most about <see cref="ReadOptions.MaxLineBytes"/> bytes, never an OverflowException after reading
/// it all. Memory checks run alone (<see cref="MemoryBoundCollection"/>).
/// </summary>
[Collection(MemoryBoundCollection.Name)]
public class LineLimitTests
{
    private readonly DatasetReader _reader = new();

    [Theory]
    [InlineData("huge.jsonl")]
    [InlineData("huge.csv")]
    public async Task A_2_GiB_line_fails_at_the_default_limit_naming_file_and_line_with_bounded_memory(string name)
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, name);
        var head = name.EndsWith(".csv", StringComparison.Ordinal) ? "text,label\nok,a\n"u8.ToArray() : "{\"text\":\"ok\",\"label\":\"a\"}\n"u8.ToArray();
        await using (var f = File.Create(path))
        {
            f.Write(head);
            f.SetLength(head.Length + (2L << 30)); // sparse: 2 GiB of zero bytes on line 2 (3 for CSV)
            f.Seek(0, SeekOrigin.End);
            f.Write("\n"u8);
        }

        var line = name.EndsWith(".csv", StringComparison.Ordinal) ? 3 : 2;
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var act = () => _reader.ReadAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning with { MalformedRecords = RowErrorPolicy.Skip });
        var e = (await act.Should().ThrowAsync<DatasetException>()).Which;
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        e.FilePath.Should().Be(path);
        e.Row.Should().Be(line);
        e.Message.Should().StartWith($"'{path}', line {line}: the line is longer than {ReadOptions.DefaultMaxLineBytes} bytes (ReadOptions.MaxLineBytes)");
        allocated.Should().BeLessThan(4L * ReadOptions.DefaultMaxLineBytes, "the reader buffers about the limit, not the line");
    }

    [Theory]
    [InlineData("zero.jsonl")]
    [InlineData("zero.ndjson")]
    [InlineData("zero.csv")]
    public async Task A_link_to_dev_zero_fails_at_the_configured_limit(string name)
    {
        if (!File.Exists("/dev/zero"))
        {
            return; // not Unix
        }

        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, name);
        File.CreateSymbolicLink(path, "/dev/zero");
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var act = () => _reader.ReadAsync(path, ColumnMapping.Classification, new ReadOptions { MaxLineBytes = 1 << 20 });
        var e = (await act.Should().ThrowAsync<DatasetException>()).Which;
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        e.Message.Should().Be($"'{path}', line 1: the line is longer than 1048576 bytes (ReadOptions.MaxLineBytes)"
            + (name.EndsWith(".csv", StringComparison.Ordinal) ? "." : "; expected one JSON object per line."));
        allocated.Should().BeLessThan(16L << 20);
    }

    [Fact]
    public async Task The_limit_is_exact_and_applies_to_a_CSV_record_spanning_lines()
    {
        using var dir = new TempDir();
        var ok = dir.File("ok.jsonl", "{\"text\":\"abc\",\"label\":\"x\"}\r\n");       // 26 bytes + CRLF
        (await _reader.ReadAsync(ok, ColumnMapping.Classification, new ReadOptions { MaxLineBytes = 26 })).Examples.Should().HaveCount(1);
        var tooLong = () => _reader.ReadAsync(ok, ColumnMapping.Classification, new ReadOptions { MaxLineBytes = 25 });
        (await tooLong.Should().ThrowAsync<DatasetException>()).Which.Row.Should().Be(1);

        var csv = dir.File("open.csv", "text,label\n\"never closed,x\n" + string.Concat(Enumerable.Repeat("0123456789\n", 20)));
        var act = () => _reader.ReadAsync(csv, ColumnMapping.Classification, new ReadOptions { MaxLineBytes = 100, MalformedRecords = RowErrorPolicy.Skip });
        (await act.Should().ThrowAsync<DatasetException>()).Which.Message.Should()
            .Be($"'{csv}', line 10: the record that starts on line 2 is longer than 100 bytes (ReadOptions.MaxLineBytes) by this line; is a quote never closed?");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MaxValue)]
    public void The_limit_is_validated(int value)
    {
        var act = () => new ReadOptions { MaxLineBytes = value };
        act.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("MaxLineBytes");
    }
}

/// <summary>Tests that measure allocations run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryBoundCollection
{
    public const string Name = "Memory-bound reliability tests";
}
