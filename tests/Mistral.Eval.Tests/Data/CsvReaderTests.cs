using Mistral.Eval.Data;

namespace Mistral.Eval.Tests.Data;

public class CsvReaderTests
{
    private readonly DatasetReader _reader = new();

    [Fact]
    public async Task Reads_quoted_multiline_fields_doubled_quotes_and_crlf()
    {
        var r = await _reader.ReadCsvAsync(EvalDataFixtures.PathOf("samsum_sample.csv"), ColumnMapping.Summarization, ReadOptions.StudyCleaning);
        r.Examples.Select(e => (e.Input, e.Target, e.SourceRow)).Should().Equal(
            ("Amanda: I baked cookies. Do you want some?\r\nJerry: Sure!\r\nAmanda: I'll bring you tomorrow :-)", "Amanda baked cookies and will bring Jerry some tomorrow.", (long?)2),
            ("Olivia: Who are you voting for?\r\nOlivier: \"Liberals\", as always.", "Olivia and Olivier are voting for liberals.", (long?)5),
            ("Tim: hi, all", "Tim greets everyone.", (long?)8));
        r.SkippedRows.Should().ContainSingle().Which.Should().Be(new SkippedRow(7, "dialogue", SkipReason.NullValue,
            $"'{EvalDataFixtures.PathOf("samsum_sample.csv")}', line 7, column 'dialogue': the value is null; expected a string"));
    }

    [Fact]
    public async Task Missing_column_names_file_column_and_the_columns_there_are()
    {
        var path = EvalDataFixtures.PathOf("samsum_sample.csv");
        var act = () => _reader.ReadCsvAsync(path, ColumnMapping.Classification);
        var ex = (await act.Should().ThrowAsync<DatasetException>()).Which;
        ex.Message.Should().Be($"'{path}', line 1, column 'text': the header has no such column; its columns are 'id', 'dialogue', 'summary'.");
    }

    [Theory]
    [InlineData("text,label\na,x\nb,y,z\nc,w\n", 3, "the record has 3 fields but the header has 2")]
    [InlineData("text,label\na,x\n\"b\"q,y\nc,w\n", 3, "unexpected character 'q' after the closing quote of field 1 on line 3")]
    public async Task Malformed_records_fail_with_line_or_are_skipped_and_counted(string csv, long line, string detail)
    {
        using var dir = new TempDir();
        var path = dir.File("bad.csv", csv);
        var act = () => _reader.ReadCsvAsync(path, ColumnMapping.Classification);
        var ex = (await act.Should().ThrowAsync<DatasetException>()).Which;
        ex.Message.Should().StartWith($"'{path}', line {line}: {detail}");
        ex.Row.Should().Be(line);

        var r = await _reader.ReadCsvAsync(path, ColumnMapping.Classification, new ReadOptions { MalformedRecords = RowErrorPolicy.Skip });
        r.Examples.Select(e => e.Input).Should().Equal("a", "c");
        r.SkipCounts[SkipReason.MalformedRecord].Should().Be(1);
    }

    [Fact]
    public async Task Unclosed_quote_names_the_line_where_the_field_starts()
    {
        using var dir = new TempDir();
        var path = dir.File("open.csv", "text,label\na,x\n\"never\nclosed,y\n");
        var act = () => _reader.ReadCsvAsync(path, ColumnMapping.Classification);
        (await act.Should().ThrowAsync<DatasetException>()).Which.Message.Should()
            .Be($"'{path}', line 3: the quoted field that starts on line 3 is never closed (reached the end of the file)");
    }

    [Fact]
    public async Task Lone_cr_and_lf_line_ends_blank_lines_bom_and_other_delimiters()
    {
        using var dir = new TempDir();
        var path = dir.File("mixed.csv", "\uFEFFtext;label\r\ra;x\rb;\"y;z\"\n\n");
        var r = await _reader.ReadCsvAsync(path, ColumnMapping.Classification, new ReadOptions { CsvDelimiter = ';' });
        r.Examples.Select(e => (e.Input, e.Target, e.SourceRow)).Should().Equal(("a", "x", (long?)3), ("b", "y;z", (long?)4));
    }

    [Fact]
    public async Task Header_problems_are_errors()
    {
        using var dir = new TempDir();
        var empty = dir.File("empty.csv", "\n\n");
        var act = () => _reader.ReadCsvAsync(empty, ColumnMapping.Classification);
        (await act.Should().ThrowAsync<DatasetException>()).Which.Message.Should().Be($"'{empty}': the file is empty; expected a header row.");
        var dup = dir.File("dup.csv", "text,label,text\n");
        var act2 = () => _reader.ReadCsvAsync(dup, ColumnMapping.Classification);
        (await act2.Should().ThrowAsync<DatasetException>()).Which.Message.Should().Be($"'{dup}', line 1, column 'text': the header names this column twice.");
    }

    [Fact]
    public async Task Invalid_utf8_inside_a_multiline_record_names_the_physical_line_and_the_record_start()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "bad-utf8.csv");
        byte[] content = [.. "text,label\r\na,x\r\n\"first\r\nsecond "u8, 0xC3, 0x28, .. " third\r\n\",y\r\nc,z\r\n"u8];
        await File.WriteAllBytesAsync(path, content);
        var act = () => _reader.ReadCsvAsync(path, ColumnMapping.Classification);
        var ex = (await act.Should().ThrowAsync<DatasetException>()).Which;
        ex.Message.Should().Be($"'{path}', line 4: invalid UTF-8: cannot decode 0xC3 at byte 8 of the line, in the record that starts on line 3; the file must be UTF-8 encoded.");
        ex.Row.Should().Be(4);
    }

    [Fact]
    public async Task Invalid_utf8_far_into_the_file_names_the_exact_line()
    {
        using var dir = new TempDir();
        var bytes = new List<byte>("text,label\n"u8.ToArray());
        for (int i = 0; i < 6000; i++)
        {
            bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(i % 10 == 0 ? $"\"quoted\nrow {i} é\",l\n" : $"row {i} 😀,l\n"));
        }

        // 1 header line + 600 two-line records + 5400 one-line records = 6601 lines before the bad one.
        bytes.AddRange("bad "u8.ToArray());
        bytes.Add(0xFE);
        bytes.AddRange(",x\nok,y\n"u8.ToArray());
        var path = Path.Combine(dir.Path, "big-bad.csv");
        await File.WriteAllBytesAsync(path, bytes.ToArray());
        var act = () => _reader.ReadCsvAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning);
        var ex = (await act.Should().ThrowAsync<DatasetException>()).Which;
        ex.Message.Should().Be($"'{path}', line 6602: invalid UTF-8: cannot decode 0xFE at byte 5 of the line; the file must be UTF-8 encoded.");
        ex.Row.Should().Be(6602);
    }

    [Fact]
    public async Task Invalid_utf8_in_the_header_names_line_one()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "bad-header.csv");
        await File.WriteAllBytesAsync(path, [.. "\r\ntext,lab"u8, 0x80, .. "el\r\na,b\r\n"u8]);
        var act = () => _reader.ReadCsvAsync(path, ColumnMapping.Classification);
        (await act.Should().ThrowAsync<DatasetException>()).Which.Message.Should()
            .Be($"'{path}', line 2: invalid UTF-8: cannot decode 0x80 at byte 9 of the line; the file must be UTF-8 encoded.");
    }

    [Fact]
    public async Task Large_file_spanning_many_buffers_reads_every_record()
    {
        using var dir = new TempDir();
        var sb = new System.Text.StringBuilder("text,label\n");
        for (int i = 0; i < 20000; i++)
        {
            sb.Append('"').Append("row ").Append(i).Append("\nsecond \"\"line\"\"\",l").Append(i % 7).Append('\n');
        }

        var path = dir.File("big.csv", sb.ToString());
        var r = await _reader.ReadCsvAsync(path, ColumnMapping.Classification);
        r.Examples.Should().HaveCount(20000);
        r.Examples[12345].Should().Be(new Example("row 12345\nsecond \"line\"", "l4") { SourceRow = 2 + (2 * 12345) });
    }
}
