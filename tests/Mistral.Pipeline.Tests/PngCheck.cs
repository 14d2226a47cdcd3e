using SkiaSharp;

namespace Mistral.Pipeline.Tests;

/// <summary>Checks that a PNG holds a real picture: the PNG signature, a plausible size, and many colours with spread.</summary>
internal static class PngCheck
{
    private static readonly byte[] Signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    public static void AssertNonTrivial(string path, int minWidth = 400, int minHeight = 300)
    {
        File.Exists(path).Should().BeTrue(path);
        byte[] bytes = File.ReadAllBytes(path);
        bytes.Length.Should().BeGreaterThan(5_000, $"{path} is a drawn plot, not an empty image");
        bytes.Take(8).Should().Equal(Signature, $"{path} starts with the PNG signature");
        using var bitmap = SKBitmap.Decode(bytes);
        bitmap.Should().NotBeNull($"{path} decodes");
        bitmap.Width.Should().BeGreaterThanOrEqualTo(minWidth);
        bitmap.Height.Should().BeGreaterThanOrEqualTo(minHeight);
        var colors = new HashSet<uint>();
        double sum = 0, sumSq = 0;
        int n = 0;
        for (int y = 0; y < bitmap.Height; y += 2)
        {
            for (int x = 0; x < bitmap.Width; x += 2)
            {
                var c = bitmap.GetPixel(x, y);
                colors.Add((uint)c);
                double luma = 0.299 * c.Red + 0.587 * c.Green + 0.114 * c.Blue;
                sum += luma;
                sumSq += luma * luma;
                n++;
            }
        }

        double mean = sum / n, variance = sumSq / n - mean * mean;
        colors.Count.Should().BeGreaterThan(40, $"{path} has text, lines and fills in several colours");
        variance.Should().BeGreaterThan(50, $"{path} is not one flat colour");
        double nonWhite = 0;
        for (int y = 0; y < bitmap.Height; y += 2)
        {
            for (int x = 0; x < bitmap.Width; x += 2)
            {
                var c = bitmap.GetPixel(x, y);
                if (c.Red < 240 || c.Green < 240 || c.Blue < 240)
                {
                    nonWhite++;
                }
            }
        }

        (nonWhite / n).Should().BeGreaterThan(0.02, $"{path} has drawn content beyond the background");
    }
}
