using System.Text.Json;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>
/// Quantizes every case of an NF4 fixture folder written by tools/nf4/nf4_reference.py on a device and compares every
/// output bit for bit (the test suite does the same on the CPU). Run against a folder the reference wrote with
/// <c>--device cuda</c> to compare our CUDA path with the Python reference on CUDA for identical inputs.
/// </summary>
internal static class Nf4FixtureCheck
{
    public static int Run(string folder, Device device)
    {
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "index.json")));
        Console.WriteLine($"fixtures {folder}: made by torch {index.RootElement.GetProperty("torch").GetString()} on {index.RootElement.GetProperty("device").GetString()}; ours on {device}; dequantize path: {Mistral.Peft.Quantization.Cuda.Nf4CudaKernel.Status}");
        int cases = 0;
        var mismatches = new List<string>();
        foreach (JsonElement c in index.RootElement.GetProperty("cases").EnumerateArray())
        {
            cases++;
            string name = c.GetProperty("name").GetString()!;
            JsonElement files = c.GetProperty("files");
            byte[] Raw(string key) => File.ReadAllBytes(Path.Combine(folder, files.GetProperty(key).GetProperty("file").GetString()!));
            long[] shape = [.. c.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64())];
            int bs = c.GetProperty("blocksize").GetInt32();
            using var scope = NewDisposeScope();
            byte[] inputBytes = Raw("input");
            var floats = new float[inputBytes.Length / 4];
            Buffer.BlockCopy(inputBytes, 0, floats, 0, inputBytes.Length);
            Tensor input = tensor(floats, ScalarType.Float32, device).reshape(shape);

            void Compare(string what, Tensor actual, byte[] expected)
            {
                Tensor cpu = actual.cpu().contiguous();
                byte[] bytes = cpu.bytes.ToArray();
                if (!bytes.AsSpan().SequenceEqual(expected))
                {
                    mismatches.Add($"{name}.{what}");
                }
            }

            using (var plain = Nf4Tensor.Quantize(input, new Nf4Options { BlockSize = bs, DoubleQuant = false }))
            {
                Compare("packed", plain.Packed, Raw("packed"));
                Compare("absmax", plain.Absmax, Raw("absmax"));
                Compare("deq_f32", plain.Dequantize(ScalarType.Float32), Raw("deq_f32"));
                Compare("deq_bf16", plain.Dequantize(ScalarType.BFloat16), Raw("deq_bf16"));
            }

            using var dq = Nf4Tensor.Quantize(input, new Nf4Options { BlockSize = bs });
            Compare("absmax_u8", dq.Absmax, Raw("absmax_u8"));
            Compare("nested_absmax", dq.NestedAbsmax!, Raw("nested_absmax"));
            if (BitConverter.SingleToUInt32Bits(dq.NestedOffset) != c.GetProperty("offset_f32_bits").GetUInt32())
            {
                mismatches.Add($"{name}.offset");
            }

            Compare("deq_dq_f32", dq.Dequantize(ScalarType.Float32), Raw("deq_dq_f32"));
            Compare("deq_dq_bf16", dq.Dequantize(ScalarType.BFloat16), Raw("deq_dq_bf16"));

            // The loader's staged path: the weight in host memory, sent to the device one chunk at a time (small chunks
            // here, so most cases span several), quantized there with double quantization.
            if (device.type != DeviceType.CPU)
            {
                using var staged = Nf4Tensor.Quantize(input.cpu(), new Nf4Options { BlockSize = bs }, 4L * bs, device);
                if (staged.Packed.device.type != device.type)
                {
                    mismatches.Add($"{name}.staged_device");
                }

                Compare("staged_packed", staged.Packed, Raw("packed"));
                Compare("staged_absmax_u8", staged.Absmax, Raw("absmax_u8"));
                Compare("staged_nested_absmax", staged.NestedAbsmax!, Raw("nested_absmax"));
                if (BitConverter.SingleToUInt32Bits(staged.NestedOffset) != c.GetProperty("offset_f32_bits").GetUInt32())
                {
                    mismatches.Add($"{name}.staged_offset");
                }
            }
        }

        Console.WriteLine(mismatches.Count == 0
            ? $"NF4 CHECK PASS: {cases} cases bit-identical on {device}"
            : $"NF4 CHECK FAIL: {cases} cases, {mismatches.Count} mismatches on {device}: {string.Join(", ", mismatches)}");
        return mismatches.Count == 0 ? 0 : 1;
    }
}
