using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.QuantizedModel;

/// <summary>bitsandbytes-format 4-bit checkpoints: the exact key set, dtypes, shapes and JSON, and lossless round trips.</summary>
public class QuantizedCheckpointTests(ITestOutputHelper output)
{
    /// <summary>What bitsandbytes' Linear4bit._save_to_state_dict writes for a double-quantized NF4 weight P (REFERENCE §3).</summary>
    private static readonly string[] DoubleQuantSuffixes =
    [
        "weight",
        "weight.absmax",
        "weight.quant_map",
        "weight.nested_absmax",
        "weight.nested_quant_map",
        "weight.quant_state.bitsandbytes__nf4",
    ];

    private static readonly string[] SingleQuantSuffixes =
    [
        "weight",
        "weight.absmax",
        "weight.quant_map",
        "weight.quant_state.bitsandbytes__nf4",
    ];

    [Fact]
    public void SavedKeySetIsExactlyWhatBitsAndBytesWrites()
    {
        string dir = SaveDefault(out _);
        try
        {
            using var file = SafeTensorsFile.Open(Path.Combine(dir, "model.safetensors"));
            file.Metadata.Should().Equal(new Dictionary<string, string> { ["format"] = "pt" });
            var expected = new List<string> { "lm_head.weight", "model.embed_tokens.weight", "model.norm.weight" };
            for (int i = 0; i < 2; i++)
            {
                expected.Add($"model.layers.{i}.input_layernorm.weight");
                expected.Add($"model.layers.{i}.post_attention_layernorm.weight");
                foreach (var p in TinyCheckpoints.Projections)
                {
                    expected.AddRange(DoubleQuantSuffixes.Select(s => $"model.layers.{i}.{p}.{s}"));
                }
            }

            file.Tensors.Keys.Should().BeEquivalentTo(expected);
            file.Tensors.Should().HaveCount(3 + (2 * (2 + (7 * 6))));

            // q_proj [64, 64]: 4096 weights → 2048 packed bytes [2048, 1], 64 uint8 scales, 1 nested scale.
            AssertTensor(file, "model.layers.0.self_attn.q_proj.weight", "U8", [2048, 1]);
            AssertTensor(file, "model.layers.0.self_attn.q_proj.weight.absmax", "U8", [64]);
            AssertTensor(file, "model.layers.0.self_attn.q_proj.weight.quant_map", "F32", [16]);
            AssertTensor(file, "model.layers.0.self_attn.q_proj.weight.nested_absmax", "F32", [1]);
            AssertTensor(file, "model.layers.0.self_attn.q_proj.weight.nested_quant_map", "F32", [256]);
            // down_proj [64, 160]: 10240 weights → 5120 bytes, 160 scales.
            AssertTensor(file, "model.layers.1.mlp.down_proj.weight", "U8", [5120, 1]);
            AssertTensor(file, "model.layers.1.mlp.down_proj.weight.absmax", "U8", [160]);
            AssertTensor(file, "model.embed_tokens.weight", "BF16", [320, 64]);
            AssertTensor(file, "lm_head.weight", "BF16", [320, 64]);
            AssertTensor(file, "model.norm.weight", "BF16", [64]);

            string json = Encoding.UTF8.GetString(file.ReadBytes("model.layers.1.mlp.down_proj.weight.quant_state.bitsandbytes__nf4"));
            output.WriteLine(json);
            json.Should().MatchRegex(
                "^" + Regex.Escape("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [64, 160], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": ")
                + @"-?\d+\.\d+(e-?\d+)?\}$");
            file.Tensors["model.layers.1.mlp.down_proj.weight.quant_state.bitsandbytes__nf4"].Shape.Should().Equal(Encoding.UTF8.GetByteCount(json));
            file.Load("model.layers.0.mlp.up_proj.weight.quant_map").data<float>().ToArray()
                .Should().Equal(-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
                    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                    0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ConfigJsonCarriesTheBitsAndBytesQuantizationConfig()
    {
        string dir = SaveDefault(out _);
        try
        {
            string path = Path.Combine(dir, "config.json");
            var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            var q = root["quantization_config"]!.AsObject();
            q["quant_method"]!.GetValue<string>().Should().Be("bitsandbytes");
            q["load_in_4bit"]!.GetValue<bool>().Should().BeTrue();
            q["load_in_8bit"]!.GetValue<bool>().Should().BeFalse();
            q["bnb_4bit_quant_type"]!.GetValue<string>().Should().Be("nf4");
            q["bnb_4bit_use_double_quant"]!.GetValue<bool>().Should().BeTrue();
            q["bnb_4bit_compute_dtype"]!.GetValue<string>().Should().Be("bfloat16");
            q["bnb_4bit_quant_storage"]!.GetValue<string>().Should().Be("uint8");
            q.ContainsKey("llm_int8_skip_modules").Should().BeTrue();
            q["llm_int8_skip_modules"].Should().BeNull();
            root["torch_dtype"]!.GetValue<string>().Should().Be("bfloat16");
            MistralConfig.FromFile(path).Should().Be(TinyCheckpoints.Config() with { TorchDtype = "bfloat16" });
            Directory.GetFiles(dir).Select(Path.GetFileName).Should().BeEquivalentTo(["config.json", "model.safetensors"]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void SaveThenLoadPrequantizedGivesBitIdenticalTensorsAndLogits()
    {
        string dir = SaveDefault(out var original);
        try
        {
            using (original)
            {
                var loaded = QuantizedModelLoader.LoadPrequantized(dir);
                using var model = loaded.Model;
                loaded.Prequantized.Should().BeTrue();
                loaded.QuantizedLayers.Should().Be(14);
                AssertSameTensors(original, model);

                using var file = SafeTensorsFile.Open(Path.Combine(dir, "model.safetensors"));
                var q = (Linear4bit)ModuleTree.Get(model, "model.layers.1.mlp.gate_proj");
                using (var w = q.QuantizedWeight())
                {
                    file.ReadBytes("model.layers.1.mlp.gate_proj.weight").Should().Equal(w.Packed.data<byte>().ToArray());
                    file.ReadBytes("model.layers.1.mlp.gate_proj.weight.absmax").Should().Equal(w.Absmax.data<byte>().ToArray());
                }

                foreach (var (ids, mask) in TinyCheckpoints.Inputs())
                {
                    using var scope = NewDisposeScope();
                    var a = TinyModels.Logits(original, ids, mask);
                    var b = TinyModels.Logits(model, ids, mask);
                    TensorChecks.Exactly(a, b).Should().BeTrue("a lossless round trip computes the same logits bit for bit");
                }

                // Saving the reloaded model reproduces the file byte for byte.
                string again = TestPaths.TempDir();
                try
                {
                    QuantizedCheckpoint.Save(model, again);
                    File.ReadAllBytes(Path.Combine(again, "model.safetensors")).Should().Equal(File.ReadAllBytes(Path.Combine(dir, "model.safetensors")));
                    File.ReadAllText(Path.Combine(again, "config.json")).Should().Be(File.ReadAllText(Path.Combine(dir, "config.json")));
                }
                finally
                {
                    Directory.Delete(again, recursive: true);
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Float32WithoutDoubleQuantRoundTripsWithFloat32Scales()
    {
        var options = new QuantizedLoadOptions
        {
            DType = ScalarType.Float32,
            Nf4 = new Nf4Options { DoubleQuant = false, ComputeDtype = ScalarType.Float32 },
            SkipModules = ["model.layers.1.mlp.down_proj"],
        };
        using var original = QuantizedModelLoader.Load(TinyCheckpoints.Folder("mha_full"), options).Model;
        string dir = TestPaths.TempDir();
        try
        {
            QuantizedCheckpoint.Save(original, dir);
            using (var file = SafeTensorsFile.Open(Path.Combine(dir, "model.safetensors")))
            {
                var layer0 = file.Tensors.Keys.Where(k => k.StartsWith("model.layers.0.self_attn.q_proj.", StringComparison.Ordinal));
                layer0.Should().BeEquivalentTo(SingleQuantSuffixes.Select(s => "model.layers.0.self_attn.q_proj." + s));
                // mha_full: hidden 48, intermediate 96, 3 layers. q_proj [48, 48] → 2304 weights, 36 float32 scales.
                AssertTensor(file, "model.layers.0.self_attn.q_proj.weight", "U8", [1152, 1]);
                AssertTensor(file, "model.layers.0.self_attn.q_proj.weight.absmax", "F32", [36]);
                AssertTensor(file, "model.layers.1.mlp.down_proj.weight", "F32", [48, 96]);
                file.Tensors.Keys.Should().NotContain(k => k.StartsWith("model.layers.1.mlp.down_proj.weight.", StringComparison.Ordinal));
                Encoding.UTF8.GetString(file.ReadBytes("model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4"))
                    .Should().Be("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [48, 48]}");
            }

            var q = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!["quantization_config"]!;
            q["bnb_4bit_use_double_quant"]!.GetValue<bool>().Should().BeFalse();
            q["bnb_4bit_compute_dtype"]!.GetValue<string>().Should().Be("float32");
            q["llm_int8_skip_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Should().Equal("lm_head", "model.layers.1.mlp.down_proj");

            // Load() detects quantization_config by itself.
            var loaded = QuantizedModelLoader.Load(dir, new QuantizedLoadOptions { DType = ScalarType.Float32 });
            using var model = loaded.Model;
            loaded.Prequantized.Should().BeTrue();
            loaded.QuantizedLayers.Should().Be((3 * 7) - 1);
            ((Linear4bit)ModuleTree.Get(model, "model.layers.0.mlp.up_proj")).ComputeDtype.Should().Be(ScalarType.Float32);
            AssertSameTensors(original, model);
            foreach (var (ids, mask) in TinyCheckpoints.Inputs("mha_full"))
            {
                using var scope = NewDisposeScope();
                TensorChecks.Exactly(TinyModels.Logits(original, ids, mask), TinyModels.Logits(model, ids, mask)).Should().BeTrue();
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void PrequantizedComputeDtypeComesFromTheFileUnlessOverridden()
    {
        string dir = SaveDefault(out var original);
        original.Dispose();
        try
        {
            using (var m = QuantizedModelLoader.LoadPrequantized(dir).Model)
            {
                ((Linear4bit)ModuleTree.Get(m, "model.layers.0.self_attn.q_proj")).ComputeDtype.Should().Be(ScalarType.BFloat16);
            }

            using (var m = QuantizedModelLoader.LoadPrequantized(dir, new QuantizedLoadOptions { PrequantizedComputeDtype = ScalarType.Float32 }).Model)
            {
                ((Linear4bit)ModuleTree.Get(m, "model.layers.0.self_attn.q_proj")).ComputeDtype.Should().Be(ScalarType.Float32);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("quant_method", "\"gptq\"", "quantization_config.quant_method")]
    [InlineData("bnb_4bit_quant_type", "\"fp4\"", "quantization_config.bnb_4bit_quant_type")]
    public void UnsupportedQuantizationConfigIsRejectedNamingTheField(string field, string value, string named)
    {
        string dir = SaveDefault(out var original);
        original.Dispose();
        string bad = TinyCheckpoints.CopyWithEdits(dir, _ => { }, json =>
        {
            var root = JsonNode.Parse(json)!.AsObject();
            root["quantization_config"]![field] = JsonNode.Parse(value);
            return root.ToJsonString();
        });
        try
        {
            var act = () => QuantizedModelLoader.LoadPrequantized(bad);
            act.Should().Throw<InvalidDataException>().Which.Message.Should().Contain(named).And.Contain(Path.Combine(bad, "config.json"));
            var viaLoad = () => QuantizedModelLoader.Load(bad);
            viaLoad.Should().Throw<InvalidDataException>().Which.Message.Should().Contain(named);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            Directory.Delete(bad, recursive: true);
        }
    }

    [Fact]
    public void LoadPrequantizedOfADenseFolderNamesTheMissingField()
    {
        var act = () => QuantizedModelLoader.LoadPrequantized(TinyCheckpoints.Folder());
        act.Should().Throw<InvalidDataException>().WithMessage("*config.json*no 'quantization_config' field*");
    }

    [Fact]
    public void PrequantizedMismatchesAreListedTogether()
    {
        string dir = SaveDefault(out var original);
        original.Dispose();
        string bad = TinyCheckpoints.CopyWithEdits(dir, t =>
        {
            t.Remove("model.layers.0.self_attn.v_proj.weight.nested_absmax", out var n);
            n!.Dispose();
            t.Remove("model.layers.1.mlp.gate_proj.weight.quant_state.bitsandbytes__nf4", out var s);
            s!.Dispose();
            var wrong = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [64, 32], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.5}";
            t["model.layers.0.self_attn.o_proj.weight.quant_state.bitsandbytes__nf4"].Dispose();
            t["model.layers.0.self_attn.o_proj.weight.quant_state.bitsandbytes__nf4"] = tensor(Encoding.UTF8.GetBytes(wrong), ScalarType.Byte);
        });
        try
        {
            var act = () => QuantizedModelLoader.LoadPrequantized(bad);
            var e = act.Should().Throw<CheckpointMismatchException>().Which;
            output.WriteLine(e.Message);
            e.Missing.Should().Equal("model.layers.0.self_attn.v_proj.weight.nested_absmax");
            // Without its quant state, gate_proj of layer 1 is read as a dense Linear: its packed weight has the wrong
            // shape and its other bnb tensors are unexpected.
            e.Unexpected.Should().Equal(
                "model.layers.1.mlp.gate_proj.weight.absmax",
                "model.layers.1.mlp.gate_proj.weight.nested_absmax",
                "model.layers.1.mlp.gate_proj.weight.nested_quant_map",
                "model.layers.1.mlp.gate_proj.weight.quant_map");
            e.MisShaped.Should().HaveCount(2);
            e.MisShaped.Should().Contain(m => m.Contains("model.layers.0.self_attn.o_proj.weight.quant_state.bitsandbytes__nf4") && m.Contains("[64, 32] vs model [64, 64]"));
            e.MisShaped.Should().Contain("model.layers.1.mlp.gate_proj.weight: checkpoint [5120, 1] vs model [160, 64]");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            Directory.Delete(bad, recursive: true);
        }
    }

    [Fact]
    public void SavingRefusesDenseModelsAndShadowingIndexes()
    {
        using var dense = new MistralForCausalLM(TinyCheckpoints.Config(), ScalarType.Float32, CPU);
        var act = () => QuantizedCheckpoint.Save(dense, TestPaths.TempDir());
        act.Should().Throw<InvalidOperationException>().WithMessage("*no Linear4bit*");

        using var model = QuantizedModelLoader.Load(TinyCheckpoints.Folder()).Model;
        string dir = TestPaths.TempDir();
        try
        {
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), "{}");
            var shadow = () => QuantizedCheckpoint.Save(model, dir);
            shadow.Should().Throw<IOException>().WithMessage("*model.safetensors.index.json*");
            File.Exists(Path.Combine(dir, "model.safetensors")).Should().BeFalse();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string SaveDefault(out MistralForCausalLM model)
    {
        model = QuantizedModelLoader.Load(TinyCheckpoints.Folder()).Model;
        string dir = TestPaths.TempDir();
        QuantizedCheckpoint.Save(model, dir);
        return dir;
    }

    private static void AssertTensor(SafeTensorsFile file, string name, string dtype, long[] shape)
    {
        file.Tensors.Should().ContainKey(name);
        file.Tensors[name].DTypeName.Should().Be(dtype, name);
        file.Tensors[name].Shape.Should().Equal(shape, name);
    }

    private static void AssertSameTensors(MistralForCausalLM expected, MistralForCausalLM actual)
    {
        var a = expected.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(expected.named_buffers()).ToList();
        var b = actual.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(actual.named_buffers()).ToDictionary(x => x.Item1, x => x.Item2);
        b.Keys.Should().BeEquivalentTo(a.Select(x => x.name));
        foreach (var (name, t) in a)
        {
            TensorChecks.Exactly(t, b[name]).Should().BeTrue(name);
        }
    }
}
