// Converts JSON Lines files of string-valued objects into Parquet, deterministically.
//
// Usage: dotnet run --project tools/kit/ParquetWriter -c Release -- IN.jsonl OUT.parquet [IN2.jsonl OUT2.parquet ...]
//
// The columns are the keys of the first line's object, in order; every line must be an object with exactly those
// keys and non-null string values. Each file becomes one row group of required UTF-8 string columns, Zstandard-
// compressed (Parquet.Net's managed codec), dictionary encoding as Parquet.Net decides. Nothing time- or
// machine-dependent is written, so the same input gives the same bytes. The output is written to OUT.tmp and renamed.
using System.Text.Json;
using Parquet;
using Parquet.Schema;

if (args.Length == 0 || args.Length % 2 != 0)
{
    Console.Error.WriteLine("usage: Mistral.Kit.ParquetWriter IN.jsonl OUT.parquet [IN2.jsonl OUT2.parquet ...]");
    return 2;
}

for (int i = 0; i < args.Length; i += 2)
{
    try
    {
        var (columns, rows) = ReadJsonl(args[i]);
        await WriteParquetAsync(args[i + 1], columns, rows);
        Console.WriteLine($"{args[i + 1]}: {rows.Count} rows, columns {string.Join(", ", columns)}");
    }
    catch (Exception e) when (e is InvalidDataException or JsonException or IOException)
    {
        Console.Error.WriteLine($"{args[i]}: {e.Message}");
        return 1;
    }
}

return 0;

static (string[] Columns, List<string[]> Rows) ReadJsonl(string path)
{
    string[]? columns = null;
    var rows = new List<string[]>();
    int lineNumber = 0;
    foreach (var line in File.ReadLines(path, new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true)))
    {
        lineNumber++;
        if (line.Length == 0)
        {
            continue;
        }

        using var doc = JsonDocument.Parse(line);
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"line {lineNumber}: expected a JSON object.");
        }

        var props = doc.RootElement.EnumerateObject().ToArray();
        columns ??= props.Select(p => p.Name).ToArray();
        if (!props.Select(p => p.Name).SequenceEqual(columns, StringComparer.Ordinal))
        {
            throw new InvalidDataException($"line {lineNumber}: keys {string.Join(", ", props.Select(p => p.Name))} differ from the first line's {string.Join(", ", columns)}.");
        }

        var row = new string[columns.Length];
        for (int c = 0; c < columns.Length; c++)
        {
            if (props[c].Value.ValueKind != JsonValueKind.String)
            {
                throw new InvalidDataException($"line {lineNumber}, key '{columns[c]}': expected a string, got {props[c].Value.ValueKind}.");
            }

            row[c] = props[c].Value.GetString()!;
        }

        rows.Add(row);
    }

    return (columns ?? throw new InvalidDataException("the file has no rows."), rows);
}

static async Task WriteParquetAsync(string path, string[] columns, List<string[]> rows)
{
    var fields = columns.Select(c => new DataField<string>(c, nullable: false)).ToArray();
    var schema = new ParquetSchema(fields);
    string tmp = path + ".tmp";
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    await using (var stream = File.Create(tmp))
    {
        var options = new ParquetOptions
        {
            CompressionMethod = CompressionMethod.Zstd,
            CompressionLevel = System.IO.Compression.CompressionLevel.SmallestSize,
        };
        await using var writer = await ParquetWriter.CreateAsync(schema, stream, options);
        using var group = writer.CreateRowGroup();
        for (int c = 0; c < fields.Length; c++)
        {
            await group.WriteAsync(fields[c], rows.Select(r => r[c]).ToArray());
        }
    }

    File.Move(tmp, path, overwrite: true);
}
