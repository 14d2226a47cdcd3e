using System.Text;
using Mistral.Eval.Data;

namespace Mistral.Eval.Tests.Data;

/// <summary>
/// The line splitter under every block size small enough to cut CRLF pairs, multi-byte characters and lines at
/// each possible place, checked against <see cref="StringReader.ReadLine"/> on the same text.
/// </summary>
public class Utf8LineReaderTests
{
    private static readonly string[] Pieces = ["a", "b", " ", "é", "€", "😀", "\r", "\n", "\r\n", "{}"];

    private static string RandomText(int seed, int pieces)
    {
        var rng = new Random(seed);
        var sb = new StringBuilder();
        for (int i = 0; i < pieces; i++)
        {
            sb.Append(Pieces[rng.Next(Pieces.Length)]);
        }

        return sb.ToString();
    }

    private static List<string> ReferenceLines(string text)
    {
        var lines = new List<string>();
        using var reader = new StringReader(text);
        while (reader.ReadLine() is { } line)
        {
            lines.Add(line);
        }

        return lines;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(65536)]
    public async Task Lines_and_breaks_match_ReadLine_for_every_block_boundary(int blockSize)
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var text = RandomText(seed, 400);
            using var stream = new MemoryStream([.. "\uFEFF"u8, .. Encoding.UTF8.GetBytes(text)]);
            var reader = new Utf8LineReader(stream, blockSize);
            var lines = new List<string>();
            var rebuilt = new StringBuilder();
            while (await reader.ReadLineAsync(CancellationToken.None))
            {
                lines.Add(reader.Content.ToString());
                rebuilt.Append(reader.Chars, 0, reader.Length);
                reader.LineNumber.Should().Be(lines.Count);
            }

            lines.Should().Equal(ReferenceLines(text), $"seed {seed}, block {blockSize}");
            rebuilt.ToString().Should().Be(text, "every character and every line break is kept (the BOM is dropped)");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(7)]
    [InlineData(65536)]
    public async Task An_invalid_byte_is_reported_on_its_own_line_at_its_own_offset(int blockSize)
    {
        for (int seed = 0; seed < 30; seed++)
        {
            var text = RandomText(seed, 300);
            var bytes = Encoding.UTF8.GetBytes(text).ToList();
            int at = new Random(seed + 1000).Next(bytes.Count + 1);
            while (at < bytes.Count && (bytes[at] & 0xC0) == 0x80)
            {
                at++; // insert before a character, not inside one
            }

            bytes.Insert(at, 0xFF);
            var before = Encoding.UTF8.GetString(bytes.Take(at).ToArray());
            long expectedLine = ReferenceLines(before + "x").Count;
            int lineStart = Math.Max(before.LastIndexOf('\n'), before.LastIndexOf('\r')) + 1;
            int expectedByte = Encoding.UTF8.GetByteCount(before[lineStart..]) + 1;

            var reader = new Utf8LineReader(new MemoryStream(bytes.ToArray()), blockSize);
            var act = async () =>
            {
                while (await reader.ReadLineAsync(CancellationToken.None))
                {
                }
            };
            var ex = (await act.Should().ThrowAsync<DecoderFallbackException>()).Which;
            reader.LineNumber.Should().Be(expectedLine, $"seed {seed}, block {blockSize}");
            reader.Describe(ex).Should().Be($"cannot decode 0xFF at byte {expectedByte} of the line; the file must be UTF-8 encoded");
        }
    }

    [Fact]
    public async Task A_line_longer_than_many_blocks_and_cancellation()
    {
        var longLine = string.Concat(Enumerable.Repeat("é😀x", 100_000));
        var reader = new Utf8LineReader(new MemoryStream(Encoding.UTF8.GetBytes($"{longLine}\r\nend")), 4096);
        (await reader.ReadLineAsync(CancellationToken.None)).Should().BeTrue();
        reader.Content.ToString().Should().Be(longLine);
        reader.BreakLength.Should().Be(2);
        (await reader.ReadLineAsync(CancellationToken.None)).Should().BeTrue();
        (reader.Content.ToString(), reader.BreakLength, reader.LineNumber).Should().Be(("end", 0, 2L));
        (await reader.ReadLineAsync(CancellationToken.None)).Should().BeFalse();

        using var cts = new CancellationTokenSource();
        var cancelled = new Utf8LineReader(new MemoryStream(Encoding.UTF8.GetBytes("a\nb\n")), 1);
        (await cancelled.ReadLineAsync(cts.Token)).Should().BeTrue();
        await cts.CancelAsync();
        var act = async () => await cancelled.ReadLineAsync(cts.Token);
        await act.Should().ThrowAsync<OperationCanceledException>();
    }
}
