using System.Diagnostics;
using System.Text;
using Mistral.Eval.Data;
using Mistral.Eval.Tests.Data;
using Parquet;
using Parquet.Schema;
using Xunit.Abstractions;

namespace Mistral.Eval.Tests.Reliability;

/// <summary>
/// Issue 11 §4: fixed-seed mutations of small valid JSONL, CSV and Parquet files (byte flips, three-byte
/// corruptions, extreme length-like values, truncations, insertions, duplicated spans). Whatever the bytes, only
/// <see cref="DatasetException"/> escapes the reader (the arguments are valid and nothing is cancelled), no case
/// allocates more than a bound or runs past a time limit. CI runs <see cref="DefaultCases"/> per format; set
/// <c>MISTRAL_FUZZ_CASES</c> (e.g. 20000) to run more by hand, and <c>MISTRAL_FUZZ_SEED</c> for other mutations.
/// </summary>
[Collection(MemoryBoundCollection.Name)]
public class FuzzTests
{
    public const int DefaultCases = 300;

    private const long MaxAllocatedPerCase = 64L << 20;
    private static readonly TimeSpan MaxTimePerCase = TimeSpan.FromSeconds(10);

    private readonly ITestOutputHelper _output;

    public FuzzTests(ITestOutputHelper output) => _output = output;

    private static int Cases => int.TryParse(Environment.GetEnvironmentVariable("MISTRAL_FUZZ_CASES"), out var n) && n > 0 ? n : DefaultCases;

    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("MISTRAL_FUZZ_SEED"), out var s) ? s : 11;

    [Fact]
    public Task Jsonl_mutations_raise_only_DatasetException() => FuzzAsync("jsonl", Encoding.UTF8.GetBytes(
        "{\"text\":\"a space post\",\"label\":\"sci.space\",\"id\":1}\n"
        + "{\"text\":\"é ünicode \\u00e9 \\ud83d\\ude00\\n\",\"label\":\"rec.autos\",\"n\":[1,2.5e3,{\"x\":null}]}\r\n"
        + "\n"
        + "{\"text\":null,\"label\":\"x\"}\n"
        + "{\"text\":\"dup\",\"text\":\"last\",\"label\":7,\"deep\":[[[[]]]]}\n"));

    [Fact]
    public Task Csv_mutations_raise_only_DatasetException() => FuzzAsync("csv", Encoding.UTF8.GetBytes(
        "\uFEFFtext,label,id\r\n"
        + "a space post,sci.space,1\r\n"
        + "\"quoted, with \"\"quotes\"\"\nand a line break\",rec.autos,2\n"
        + ",alt.atheism,3\n"
        + "\n"
        + "é ünicode 😀,talk.politics,4"));

    [Fact]
    public async Task Parquet_mutations_raise_only_DatasetException()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "seed.parquet");
        var text = new DataField<string>("text", nullable: true);
        var label = new DataField<string>("label", nullable: true);
        var id = new DataField<long>("id");
        await using (var stream = File.Create(path))
        {
            await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(id, text, label), stream);
            for (int g = 0; g < 2; g++)
            {
                using var rg = writer.CreateRowGroup();
                await rg.WriteAsync<long>(id, new long[] { 3 * g, (3 * g) + 1, (3 * g) + 2 }.AsMemory());
                await rg.WriteAsync(text, (IReadOnlyCollection<string>)new[] { "a space post", null!, "é ünicode\nline" + g });
                await rg.WriteAsync(label, (IReadOnlyCollection<string>)new[] { "sci.space", "rec.autos", g == 0 ? null! : "x" });
            }
        }

        await FuzzAsync("parquet", await File.ReadAllBytesAsync(path));
    }

    private async Task FuzzAsync(string extension, byte[] seed)
    {
        var reader = new DatasetReader();
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "case." + extension);
        var options = new[]
        {
            ReadOptions.Strict,
            new ReadOptions { MalformedRecords = RowErrorPolicy.Skip, InvalidValues = RowErrorPolicy.Skip, ConvertScalarsToString = true, MaxLineBytes = 4096 },
        };

        // The seed itself reads under the lenient options (and the mutations are of a readable file).
        await File.WriteAllBytesAsync(path, seed);
        (await reader.ReadAsync(path, ColumnMapping.Classification, options[1])).Examples.Should().NotBeEmpty();

        var random = new Random(Seed);
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var escaped = new List<string>();
        var total = Stopwatch.StartNew();
        var slowest = (Time: TimeSpan.Zero, Case: string.Empty);
        for (int i = 0; i < Cases; i++)
        {
            var (bytes, how) = Mutate(seed, random);
            await File.WriteAllBytesAsync(path, bytes);
            var opts = options[i % options.Length];
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var watch = Stopwatch.StartNew();
            string outcome;
            try
            {
                using var cts = new CancellationTokenSource(MaxTimePerCase * 2);
                var read = reader.ReadAsync(path, ColumnMapping.Classification, opts, cts.Token);
                var result = await read.WaitAsync(MaxTimePerCase * 3).ConfigureAwait(false);
                outcome = "read";
                result.Examples.Count.Should().BeLessThanOrEqualTo((int)result.RowsSeen);
            }
            catch (DatasetException e)
            {
                outcome = nameof(DatasetException);
                if (e.FilePath != path || !e.Message.StartsWith($"'{path}'", StringComparison.Ordinal))
                {
                    escaped.Add($"case {i} ({how}): the message does not start with the file: {e.Message}");
                }
            }
            catch (Exception e)
            {
                outcome = e.GetType().Name;
                escaped.Add($"case {i} ({how}): {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
            }

            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            if (allocated > MaxAllocatedPerCase)
            {
                escaped.Add($"case {i} ({how}): allocated {allocated:N0} bytes");
            }

            if (watch.Elapsed > slowest.Time)
            {
                slowest = (watch.Elapsed, $"case {i} ({how})");
            }

            if (watch.Elapsed > MaxTimePerCase)
            {
                escaped.Add($"case {i} ({how}): took {watch.Elapsed}");
            }

            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }

        _output.WriteLine($"{extension}: {Cases} cases (seed {Seed}) in {total.Elapsed.TotalSeconds:F1} s: {string.Join(", ", outcomes.Select(kv => $"{kv.Key} {kv.Value}"))}; slowest {slowest.Case} {slowest.Time.TotalMilliseconds:F0} ms");
        foreach (var e in escaped)
        {
            _output.WriteLine(e);
        }

        escaped.Should().BeEmpty();
    }

    private static readonly byte[][] Extremes =
    [
        [0xFF, 0xFF, 0xFF, 0x7F], [0x00, 0x00, 0x00, 0x80], [0xFF, 0xFF, 0xFF, 0xFF], [0x00, 0x00, 0x00, 0x00],
        [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], [0x15], [0x19], [0x1C], [0x0F],
        "\""u8.ToArray(), "\\"u8.ToArray(), "\\ud800"u8.ToArray(), "\r"u8.ToArray(), "\n"u8.ToArray(), ","u8.ToArray(),
        "{"u8.ToArray(), "["u8.ToArray(), [0xC3], [0xED, 0xA0, 0x80], [0xFE, 0xFF],
    ];

    internal static (byte[] Bytes, string How) Mutate(byte[] seed, Random random)
    {
        var b = (byte[])seed.Clone();
        switch (random.Next(7))
        {
            case 0:
            {
                int at = random.Next(b.Length);
                b[at] ^= (byte)(1 << random.Next(8));
                return (b, $"flip a bit at {at}");
            }

            case 1:
            case 2:
            {
                var places = Enumerable.Range(0, 3).Select(_ => random.Next(b.Length)).ToArray();
                foreach (var at in places)
                {
                    b[at] = (byte)random.Next(256);
                }

                return (b, $"three random bytes at {string.Join(",", places)}");
            }

            case 3:
            {
                var v = Extremes[random.Next(Extremes.Length)];
                int at = random.Next(Math.Max(1, b.Length - v.Length));
                v.AsSpan(0, Math.Min(v.Length, b.Length - at)).CopyTo(b.AsSpan(at));
                return (b, $"write {Convert.ToHexString(v)} at {at}");
            }

            case 4:
            {
                int length = random.Next(b.Length);
                return (b[..length], $"truncate to {length}");
            }

            case 5:
            {
                int at = random.Next(b.Length + 1);
                var insert = random.Next(2) == 0 ? Extremes[random.Next(Extremes.Length)] : Enumerable.Range(0, random.Next(1, 8)).Select(_ => (byte)random.Next(256)).ToArray();
                return ([.. b[..at], .. insert, .. b[at..]], $"insert {Convert.ToHexString(insert)} at {at}");
            }

            default:
            {
                int from = random.Next(b.Length);
                int length = random.Next(1, Math.Min(64, b.Length - from) + 1);
                int to = random.Next(b.Length + 1);
                return ([.. b[..to], .. b.AsSpan(from, length), .. b[to..]], $"copy {length} bytes from {from} to {to}");
            }
        }
    }
}
