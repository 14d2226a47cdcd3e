using Mistral.Eval.Data;

namespace Mistral.Eval.Tests.Data;

public class JsonlReaderTests
{
    private readonly DatasetReader _reader = new();

    [Fact]
    public async Task Study_cleaning_drops_null_missing_and_non_string_rows_and_counts_them()
    {
        var path = EvalDataFixtures.PathOf("newsgroups_sample.jsonl");
        var r = await _reader.ReadJsonlAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning);

        r.Examples.Select(e => (e.Input, e.Target)).Should().Equal(
            ("The shuttle launch was delayed.", "sci.space"),
            ("My V8 needs a new gasket.", "rec.autos"),
            ("Ünïcödé and \"quotes\" and a\nnewline", "alt.atheism"),
            ("", "sci.space"));
        r.Examples.Select(e => e.SourceRow).Should().Equal(1L, 3L, 7L, 8L);
        r.RowsSeen.Should().Be(7); // the blank line 4 is not a record
        r.SkipCounts[SkipReason.NullValue].Should().Be(1);
        r.SkipCounts[SkipReason.NonStringValue].Should().Be(1);
        r.SkipCounts[SkipReason.MissingValue].Should().Be(1);
        r.SkippedCount.Should().Be(3);
        r.SkippedRows.Select(s => (s.Row, s.Column, s.Reason)).Should().Equal(
            (2L, "text", SkipReason.NullValue), (5L, "label", SkipReason.NonStringValue), (6L, "text", SkipReason.MissingValue));
        r.SkippedRows[1].Message.Should().Contain("newsgroups_sample.jsonl").And.Contain("line 5").And.Contain("column 'label'").And.Contain("a number (3)");
        r.Describe().Should().Be($"read 4 of 7 rows from '{path}'; skipped 3 (MissingValue 1, NullValue 1, NonStringValue 1)");
    }

    [Fact]
    public async Task Strict_reading_fails_on_the_first_null_naming_file_line_and_column()
    {
        var act = () => _reader.ReadJsonlAsync(EvalDataFixtures.PathOf("newsgroups_sample.jsonl"), ColumnMapping.Classification);
        var ex = (await act.Should().ThrowAsync<DatasetException>()).Which;
        ex.Message.Should().EndWith("newsgroups_sample.jsonl', line 2, column 'text': the value is null; expected a string");
        ex.Row.Should().Be(2);
        ex.Column.Should().Be("text");
    }

    [Fact]
    public async Task Scalars_can_be_converted_to_text()
    {
        var r = await _reader.ReadJsonlAsync(EvalDataFixtures.PathOf("newsgroups_sample.jsonl"), ColumnMapping.Classification,
            ReadOptions.StudyCleaning with { ConvertScalarsToString = true });
        r.Examples.Should().ContainSingle(e => e.Input == "Is there a god?").Which.Target.Should().Be("3");
        r.SkippedCount.Should().Be(2);
    }

    [Fact]
    public async Task Malformed_line_is_an_error_with_file_and_line_or_a_counted_skip()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.jsonl", "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\": \"b\", \"label\": \n[1,2]\n{\"text\":\"c\",\"label\":\"y\"}\n");
        var act = () => _reader.ReadJsonlAsync(path, ColumnMapping.Classification);
        (await act.Should().ThrowAsync<DatasetException>()).Which.Message.Should().StartWith($"'{path}', line 2: not valid JSON:");

        var r = await _reader.ReadJsonlAsync(path, ColumnMapping.Classification, new ReadOptions { MalformedRecords = RowErrorPolicy.Skip });
        r.Examples.Select(e => e.Input).Should().Equal("a", "c");
        r.SkipCounts[SkipReason.MalformedRecord].Should().Be(2);
        r.SkippedRows[1].Message.Should().Be($"'{path}', line 3: the line is a JSON array; expected an object");
    }

    [Fact]
    public async Task A_column_no_record_has_is_reported_as_a_mapping_error()
    {
        using var dir = new TempDir();
        var path = dir.File("x.jsonl", "{\"sentence\":\"a\",\"label\":\"x\"}\n");
        var act = () => _reader.ReadJsonlAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning);
        (await act.Should().ThrowAsync<DatasetException>()).Which.Message.Should()
            .Be($"'{path}', column 'text': no record in the file has this key; check the column mapping.");
    }

    [Fact]
    public async Task Missing_file_names_the_path()
    {
        var act = () => _reader.ReadJsonlAsync("/nonexistent/train.jsonl", ColumnMapping.Classification);
        (await act.Should().ThrowAsync<FileNotFoundException>()).Which.Message.Should().Contain("/nonexistent/train.jsonl");
        var bad = () => _reader.ReadAsync("/tmp/train.txt", ColumnMapping.Classification);
        (await bad.Should().ThrowAsync<ArgumentException>()).Which.Message.Should().Contain("'.txt'");
    }

    [Fact]
    public async Task Writer_round_trips_and_replaces_atomically()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "out.jsonl");
        Example[] examples = [new("line1\nline2 \"q\" \\ é 😀", "a"), new("", "b"), new("\u0000ctl\t", "c,d")];
        (await JsonlWriter.WriteAsync(path, examples, ColumnMapping.Summarization)).Should().Be(3);
        File.ReadAllText(path).Should().StartWith("{\"dialogue\":\"line1\\nline2 \\\"q\\\" \\\\ é \\uD83D\\uDE00\",\"summary\":\"a\"}\n");
        var back = await _reader.ReadJsonlAsync(path, ColumnMapping.Summarization);
        back.Examples.Select(e => (e.Input, e.Target)).Should().Equal(examples.Select(e => (e.Input, e.Target)));

        // A failing enumeration leaves the previous file untouched and no temporary file behind.
        IEnumerable<Example> Failing()
        {
            yield return new Example("x", "y");
            throw new InvalidOperationException("boom");
        }

        var act = () => JsonlWriter.WriteAsync(path, Failing(), ColumnMapping.Summarization);
        await act.Should().ThrowAsync<InvalidOperationException>();
        (await _reader.ReadJsonlAsync(path, ColumnMapping.Summarization)).Examples.Should().HaveCount(3);
        Directory.GetFiles(dir.Path).Should().ContainSingle();
    }

    [Fact]
    public async Task Invalid_utf8_names_the_exact_line_far_into_the_file()
    {
        // 5000 valid lines (mixed LF/CRLF, multi-byte text, one line longer than a read block) put the bad byte
        // well past the first buffers; the error must name line 5001, not the line the decoder buffer had reached.
        using var dir = new TempDir();
        var bytes = new List<byte>();
        for (int i = 1; i <= 5000; i++)
        {
            var text = i == 1234 ? new string('x', 200_000) : $"row {i} é 😀";
            bytes.AddRange(System.Text.Encoding.UTF8.GetBytes($"{{\"text\":\"{text}\",\"label\":\"l{i % 3}\"}}" + (i % 2 == 0 ? "\r\n" : "\n")));
        }

        bytes.AddRange("{\"text\":\"bad "u8.ToArray());
        bytes.Add(0xFF);
        bytes.AddRange(" byte\",\"label\":\"x\"}\n{\"text\":\"after\",\"label\":\"y\"}\n"u8.ToArray());
        var path = Path.Combine(dir.Path, "bad-utf8.jsonl");
        await File.WriteAllBytesAsync(path, bytes.ToArray());

        foreach (var options in new[] { ReadOptions.Strict, new ReadOptions { MalformedRecords = RowErrorPolicy.Skip, InvalidValues = RowErrorPolicy.Skip } })
        {
            var act = () => _reader.ReadJsonlAsync(path, ColumnMapping.Classification, options);
            var ex = (await act.Should().ThrowAsync<DatasetException>()).Which;
            ex.Message.Should().Be($"'{path}', line 5001: invalid UTF-8: cannot decode 0xFF at byte 14 of the line; the file must be UTF-8 encoded.");
            ex.Row.Should().Be(5001);
            ex.InnerException.Should().BeOfType<System.Text.DecoderFallbackException>();
        }
    }

    [Theory]
    [InlineData(new byte[] { 0xEF, 0xBB, 0xBF, 0x7B, 0xC3, 0x28, 0x7D, 0x0A }, 1, "cannot decode 0xC3 at byte 5 of the line; the file must be UTF-8 encoded.")]
    [InlineData(new byte[] { 0x0A, 0x0D, 0x0A, 0x0D, 0x7B, 0x22, 0xE2, 0x82, 0x22, 0x7D }, 4, "cannot decode 0xE2 0x82 at byte 3 of the line; the file must be UTF-8 encoded.")]
    [InlineData(new byte[] { 0xFF, 0xFE, 0x7B, 0x00, 0x7D, 0x00 }, 1, "cannot decode 0xFF at byte 1 of the line; the file must be UTF-8 encoded (it starts with a UTF-16 or UTF-32 byte order mark).")]
    public async Task Invalid_utf8_line_counts_blank_lines_lone_cr_and_the_bom(byte[] content, long line, string detail)
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "enc.jsonl");
        await File.WriteAllBytesAsync(path, content);
        var act = () => _reader.ReadJsonlAsync(path, ColumnMapping.Classification);
        var ex = (await act.Should().ThrowAsync<DatasetException>()).Which;
        ex.Message.Should().Be($"'{path}', line {line}: invalid UTF-8: {detail}");
        ex.Row.Should().Be(line);
    }

    [Fact]
    public async Task Line_ends_lf_crlf_and_lone_cr_bom_and_a_last_line_without_newline_are_read()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "ends.jsonl");
        await File.WriteAllBytesAsync(path, System.Text.Encoding.UTF8.GetBytes(
            "\uFEFF{\"text\":\"a\",\"label\":\"x\"}\r\n\r\n{\"text\":\"b\",\"label\":\"y\"}\r{\"text\":\"ü😀\",\"label\":\"z\"}\n  \n{\"text\":\"d\",\"label\":\"w\"}"));
        var r = await _reader.ReadJsonlAsync(path, ColumnMapping.Classification);
        r.Examples.Select(e => (e.Input, e.Target, e.SourceRow)).Should().Equal(
            ("a", "x", (long?)1), ("b", "y", (long?)3), ("ü😀", "z", (long?)4), ("d", "w", (long?)6));
    }

    [Fact]
    public async Task Reading_honours_cancellation()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var act = () => _reader.ReadJsonlAsync(EvalDataFixtures.PathOf("newsgroups_sample.jsonl"), ColumnMapping.Classification, null, cts.Token);
        await act.Should().ThrowAsync<OperationCanceledException>();
    }
}
