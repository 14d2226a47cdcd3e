using Parquet;
using Parquet.Schema;

namespace Mistral.Hub.Tests;

/// <summary>Small Parquet files for fake Hub dataset repositories: one row group of required UTF-8 string columns, as the Hub's conversions hold.</summary>
public static class TestParquet
{
    public static byte[] Write(string[] columns, IReadOnlyList<string[]> rows) => WriteAsync(columns, rows).GetAwaiter().GetResult();

    private static async Task<byte[]> WriteAsync(string[] columns, IReadOnlyList<string[]> rows)
    {
        var fields = columns.Select(c => new DataField<string>(c, nullable: false)).ToArray();
        using var stream = new MemoryStream();
        await using (var writer = await ParquetWriter.CreateAsync(new ParquetSchema(fields), stream))
        {
            using var group = writer.CreateRowGroup();
            for (int c = 0; c < fields.Length; c++)
            {
                await group.WriteAsync(fields[c], rows.Select(r => r[c]).ToArray());
            }
        }

        return stream.ToArray();
    }

    /// <summary>A classification split (<c>text</c>, <c>label</c>) of <paramref name="count"/> rows starting at row <paramref name="first"/>.</summary>
    public static byte[] Classification(int first, int count, IReadOnlyList<string> labels) =>
        Write(["text", "label"], Enumerable.Range(first, count).Select(i => new[] { $"example {i} about {labels[i % labels.Count]}", labels[i % labels.Count] }).ToArray());
}
