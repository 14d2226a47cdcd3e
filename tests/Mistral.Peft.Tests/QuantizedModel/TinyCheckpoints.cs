using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.QuantizedModel;

/// <summary>The tiny Hugging Face checkpoints under tests/fixtures/hf and dense reference models built from them.</summary>
internal static class TinyCheckpoints
{
    public static readonly string[] Projections =
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

    public static string Folder(string name = "gqa4_window")
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, "tests", "fixtures", "hf")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return Path.Combine(dir ?? throw new DirectoryNotFoundException("tests/fixtures/hf not found above the test binaries."), "tests", "fixtures", "hf", name);
    }

    public static MistralConfig Config(string name = "gqa4_window") => MistralConfig.FromFile(Path.Combine(Folder(name), "config.json"));

    /// <summary>A dense model loaded in <paramref name="dtype"/>; with <paramref name="fakeQuantize"/> every projection weight becomes dequant(quant(W)).</summary>
    public static MistralForCausalLM Dense(string name, ScalarType dtype, Nf4Options? fakeQuantize)
    {
        var model = new MistralForCausalLM(Config(name), dtype, CPU);
        CheckpointLoader.Load(model, Folder(name));
        if (fakeQuantize is not null)
        {
            using var guard = no_grad();
            foreach (var (moduleName, module) in ModuleTree.NamedModules(model))
            {
                if (module is Mistral.Core.Modeling.Linear linear && moduleName != "lm_head")
                {
                    using var nf4 = Nf4Tensor.Quantize(linear.Weight, fakeQuantize);
                    using var deq = nf4.Dequantize(dtype);
                    linear.Weight.copy_(deq);
                }
            }
        }

        model.eval();
        return model;
    }

    /// <summary>The fixture's reference inputs: (input ids, attention mask or null).</summary>
    public static (Tensor Ids, Tensor? Mask)[] Inputs(string name = "gqa4_window")
    {
        using var reference = SafeTensorsFile.Open(Path.Combine(Folder(name), "reference.safetensors"));
        return [(reference.Load("plain.input_ids"), null), (reference.Load("padded.input_ids"), reference.Load("padded.attention_mask"))];
    }

    public static Tensor Logits(MistralForCausalLM model, Tensor ids, Tensor? mask)
    {
        using var guard = no_grad();
        var output = model.forward(new CausalLMInput(ids) { AttentionMask = mask });
        return output.Logits;
    }

    public static float MaxAbs(Tensor a, Tensor b)
    {
        using var d = (a.to(ScalarType.Float32) - b.to(ScalarType.Float32)).abs().max();
        return d.item<float>();
    }

    public static bool Exactly(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype)
        {
            return false;
        }

        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }

    public static string TempDir()
    {
        string d = Path.Combine(Path.GetTempPath(), "mistral-peft-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>Copies a fixture folder, letting <paramref name="edit"/> change the tensors (key → tensor) before writing.</summary>
    public static string CopyWithEdits(string source, Action<Dictionary<string, Tensor>> edit, Func<string, string>? editConfig = null)
    {
        string dir = TempDir();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var file = SafeTensorsFile.Open(Path.Combine(source, CheckpointReader.SingleFileName)))
        {
            foreach (var name in file.Tensors.Keys)
            {
                tensors[name] = file.Load(name);
            }
        }

        edit(tensors);
        SafeTensorsWriter.Write(Path.Combine(dir, CheckpointReader.SingleFileName), tensors);
        string config = File.ReadAllText(Path.Combine(source, "config.json"));
        File.WriteAllText(Path.Combine(dir, "config.json"), editConfig is null ? config : editConfig(config));
        foreach (var t in tensors.Values)
        {
            t.Dispose();
        }

        return dir;
    }
}
