using Mistral.Eval.Data;
using Parquet;
using Parquet.Schema;

namespace Mistral.Eval.Tests.Data;

/// <summary>
/// Parquet files written with Parquet.Net in the layout Hugging Face publishes (nullable UTF-8 string columns,
/// an extra column, several row groups). No Python Parquet writer is installable on this machine.
/// </summary>
public class ParquetReaderTests
{
    private readonly DatasetReader _reader = new();

    private static async Task WriteAsync(string path, params (string?[] Text, object Label)[] groups)
    {
        var text = new DataField<string>("text", nullable: true);
        DataField label = groups[0].Label is string?[] ? new DataField<string>("label", nullable: true) : new DataField<long?>("label");
        var id = new DataField<long>("id");
        var schema = new ParquetSchema(id, text, label);
        await using var stream = File.Create(path);
        await using var writer = await ParquetWriter.CreateAsync(schema, stream);
        long next = 0;
        foreach (var (texts, labels) in groups)
        {
            using var rg = writer.CreateRowGroup();
            var ids = Enumerable.Range(0, texts.Length).Select(_ => next++).ToArray();
            await rg.WriteAsync<long>(id, ids.AsMemory());
            await rg.WriteAsync(text, (IReadOnlyCollection<string>)texts!);
            if (labels is string?[] s)
            {
                await rg.WriteAsync(label, (IReadOnlyCollection<string>)s!);
            }
            else
            {
                await rg.WriteAsync<long>(label, ((long?[])labels).AsMemory());
            }
        }
    }

    [Fact]
    public async Task Reads_string_columns_across_row_groups_with_study_cleaning()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "train.parquet");
        await WriteAsync(path,
            (["a space post", null, "é ünicode\nline"], new string?[] { "sci.space", "rec.autos", "alt.atheism" }),
            (["car talk", "no label"], new string?[] { "rec.autos", null }));

        var r = await _reader.ReadAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning);
        r.Examples.Select(e => (e.Input, e.Target, e.SourceRow)).Should().Equal(
            ("a space post", "sci.space", (long?)0), ("é ünicode\nline", "alt.atheism", (long?)2), ("car talk", "rec.autos", (long?)3));
        r.RowsSeen.Should().Be(5);
        r.SkippedRows.Select(s => (s.Row, s.Column, s.Reason)).Should().Equal((1L, "text", SkipReason.NullValue), (4L, "label", SkipReason.NullValue));
        r.SkippedRows[1].Message.Should().Be($"'{path}', row 4, column 'label': the value is null; expected a string");

        var act = () => _reader.ReadParquetAsync(path, ColumnMapping.Classification);
        (await act.Should().ThrowAsync<DatasetException>()).Which.Message.Should().Be($"'{path}', row 1, column 'text': the value is null; expected a string");
    }

    [Fact]
    public async Task Integer_label_column_fails_strictly_drops_under_study_rule_or_converts()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "int.parquet");
        await WriteAsync(path, (["x", "y", "z"], new long?[] { 3, null, 17 }));

        var strict = () => _reader.ReadParquetAsync(path, ColumnMapping.Classification);
        (await strict.Should().ThrowAsync<DatasetException>()).Which.Message.Should()
            .Be($"'{path}', row 0, column 'label': the value is a Parquet Int64 (3); expected a string (set ReadOptions.ConvertScalarsToString to read it as text)");

        var study = await _reader.ReadParquetAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning);
        study.Examples.Should().BeEmpty();
        study.SkipCounts[SkipReason.NonStringValue].Should().Be(2);
        study.SkipCounts[SkipReason.NullValue].Should().Be(1);

        var converted = await _reader.ReadParquetAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning with { ConvertScalarsToString = true });
        converted.Examples.Select(e => (e.Input, e.Target)).Should().Equal(("x", "3"), ("z", "17"));
    }

    [Fact]
    public async Task Strict_reading_reports_the_first_offending_row_and_column_in_row_order()
    {
        // Rows are checked in order, input before target, exactly as for JSONL and CSV: the first failure wins,
        // whether it is a null, a non-string value or the other column.
        using var dir = new TempDir();
        var textNullFirst = Path.Combine(dir.Path, "a.parquet");
        await WriteAsync(textNullFirst, ([null, "b"], new long?[] { 3, 4 }));
        var act = () => _reader.ReadParquetAsync(textNullFirst, ColumnMapping.Classification);
        var ex = (await act.Should().ThrowAsync<DatasetException>()).Which;
        ex.Message.Should().Be($"'{textNullFirst}', row 0, column 'text': the value is null; expected a string");
        (ex.Row, ex.Column).Should().Be(((long?)0, "text"));

        var labelNullFirst = Path.Combine(dir.Path, "b.parquet");
        await WriteAsync(labelNullFirst, (["a", "b"], new long?[] { null, 4 }), (["c"], new long?[] { 5 }));
        var act2 = () => _reader.ReadParquetAsync(labelNullFirst, ColumnMapping.Classification);
        (await act2.Should().ThrowAsync<DatasetException>()).Which.Message.Should()
            .Be($"'{labelNullFirst}', row 0, column 'label': the value is null; expected a string");

        // Under the study rule the same file is read row by row: every row is a counted skip with its own row index.
        var study = await _reader.ReadParquetAsync(labelNullFirst, ColumnMapping.Classification, ReadOptions.StudyCleaning);
        study.SkippedRows.Select(s => (s.Row, s.Reason)).Should().Equal((0L, SkipReason.NullValue), (1L, SkipReason.NonStringValue), (2L, SkipReason.NonStringValue));
        study.SkippedRows[2].Message.Should().Be(
            $"'{labelNullFirst}', row 2, column 'label': the value is a Parquet Int64 (5); expected a string (set ReadOptions.ConvertScalarsToString to read it as text)");
    }

    [Fact]
    public async Task Missing_column_and_non_parquet_file_are_named()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "train.parquet");
        await WriteAsync(path, (["a"], new string?[] { "b" }));
        var act = () => _reader.ReadParquetAsync(path, ColumnMapping.Summarization);
        (await act.Should().ThrowAsync<DatasetException>()).Which.Message.Should()
            .Be($"'{path}', column 'dialogue': the file has no such top-level column; its columns are 'id', 'text', 'label'.");

        var notParquet = dir.File("fake.parquet", "text,label\n");
        var act2 = () => _reader.ReadParquetAsync(notParquet, ColumnMapping.Classification);
        (await act2.Should().ThrowAsync<DatasetException>()).Which.Message.Should().StartWith($"'{notParquet}': not a readable Parquet file");
    }

    [Fact]
    public async Task Reads_a_file_from_an_independent_writer_snappy_two_row_groups_with_nulls()
    {
        // tests/fixtures/eval-data/newsgroups_sample.parquet, written by npm hyparquet-writer 0.17.0
        // (tools/eval_data/make_parquet_fixture.mjs): id INT64, text/label optional UTF-8, SNAPPY, row groups of 3 + 2.
        var path = EvalDataFixtures.PathOf("newsgroups_sample.parquet");
        var r = await _reader.ReadAsync(path, ColumnMapping.Classification, ReadOptions.StudyCleaning);
        r.Examples.Select(e => (e.Input, e.Target, e.SourceRow)).Should().Equal(
            ("The shuttle launch was delayed.", "sci.space", (long?)0),
            ("Ünïcödé, \"quotes\"\nand a newline \U0001F600", "alt.atheism", (long?)2),
            ("My V8 needs a new gasket.", "rec.autos", (long?)3));
        r.SkippedRows.Select(s => (s.Row, s.Column, s.Reason)).Should().Equal((1L, "text", SkipReason.NullValue), (4L, "label", SkipReason.NullValue));
        r.RowsSeen.Should().Be(5);
        await using var raw = await ParquetReader.CreateAsync(path);
        raw.RowGroupCount.Should().Be(2, "the fixture exercises row offsets across row groups");
    }
}
