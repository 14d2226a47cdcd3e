using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests.Reliability;

/// <summary>
/// Issue 11 §4: a fixed-seed corpus of byte mutations of a valid tiny safetensors file; opening (and loading every tensor
/// of) each mutant either succeeds or throws one of the library's documented exception types. Set the environment
/// variable MISTRAL_FUZZ_ITERATIONS for a larger run by hand.
/// </summary>
public class SafeTensorsFuzzTests
{
    [Fact]
    public void MutatedHeadersThrowOnlyTheLibrarysExceptions()
    {
        string dir = TestPaths.TempDir();
        string valid = Path.Combine(dir, "valid.safetensors");
        using (Tensor a = arange(6, ScalarType.Float32).reshape(2, 3))
        using (Tensor b = ones(4, ScalarType.BFloat16))
        using (Tensor c = tensor(new long[] { 1, 2 }))
        {
            SafeTensorsWriter.Write(valid, new Dictionary<string, Tensor> { ["model.a.weight"] = a, ["b"] = b, ["c.idx"] = c },
                new Dictionary<string, string> { ["format"] = "pt" });
        }

        byte[] original = File.ReadAllBytes(valid);
        long headerEnd = 8 + BitConverter.ToInt64(original, 0);
        int iterations = int.TryParse(Environment.GetEnvironmentVariable("MISTRAL_FUZZ_ITERATIONS"), out int n) ? n : 400;
        var rng = new Random(20261207);
        string mutant = Path.Combine(dir, "mutant.safetensors");
        var failures = new List<string>();
        int accepted = 0;
        byte[] interesting = "\"{}[],:0123456789-e.\\u"u8.ToArray();
        for (int i = 0; i < iterations; i++)
        {
            byte[] bytes = (byte[])original.Clone();
            int edits = rng.Next(1, 4);
            for (int e = 0; e < edits; e++)
            {
                // Mostly the header (where the parsing is), sometimes the length prefix or the data.
                int at = rng.Next(10) switch
                {
                    0 => rng.Next(8),
                    1 => rng.Next(bytes.Length),
                    _ => 8 + rng.Next((int)headerEnd - 8),
                };
                bytes[at] = rng.Next(3) switch
                {
                    0 => (byte)rng.Next(256),
                    1 => interesting[rng.Next(interesting.Length)],
                    _ => (byte)(bytes[at] ^ (1 << rng.Next(8))),
                };
            }

            if (rng.Next(8) == 0)
            {
                Array.Resize(ref bytes, rng.Next(bytes.Length));
            }

            File.WriteAllBytes(mutant, bytes);
            try
            {
                using SafeTensorsFile f = SafeTensorsFile.Open(mutant);
                foreach (string name in f.Tensors.Keys)
                {
                    using Tensor t = f.Load(name);
                }

                accepted++;
            }
            catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException)
            {
                ex.Message.Should().Contain(mutant, "every error names the file");
            }
            catch (Exception ex)
            {
                failures.Add($"#{i}: {ex.GetType().Name}: {ex.Message}");
            }
        }

        failures.Should().BeEmpty();
        accepted.Should().BeLessThan(iterations);
    }

    [Fact]
    public void MutatedConfigJsonThrowsOnlyInvalidDataException()
    {
        byte[] original = System.Text.Encoding.UTF8.GetBytes(TinyModels.Tiny().ToJson());
        int iterations = int.TryParse(Environment.GetEnvironmentVariable("MISTRAL_FUZZ_ITERATIONS"), out int n) ? n : 400;
        var rng = new Random(7);
        byte[] interesting = "\"{}[],:0123456789-e.\\u"u8.ToArray();
        var failures = new List<string>();
        for (int i = 0; i < iterations; i++)
        {
            byte[] bytes = (byte[])original.Clone();
            for (int e = rng.Next(1, 4); e > 0; e--)
            {
                int at = rng.Next(bytes.Length);
                bytes[at] = rng.Next(2) == 0 ? (byte)rng.Next(256) : interesting[rng.Next(interesting.Length)];
            }

            try
            {
                MistralConfig.FromJson(System.Text.Encoding.UTF8.GetString(bytes), "fuzz/config.json");
            }
            catch (InvalidDataException ex)
            {
                ex.Message.Should().StartWith("fuzz/config.json");
            }
            catch (Exception ex)
            {
                failures.Add($"#{i}: {ex.GetType().Name}: {ex.Message}");
            }
        }

        failures.Should().BeEmpty();
    }
}
