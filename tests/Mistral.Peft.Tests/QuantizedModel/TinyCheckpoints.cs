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

    public static string Folder(string name = "gqa4_window") => TestPaths.FixturePath("hf", name);

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

    /// <summary>Copies a fixture folder, letting <paramref name="edit"/> change the tensors (key → tensor) before writing.</summary>
    public static string CopyWithEdits(string source, Action<Dictionary<string, Tensor>> edit, Func<string, string>? editConfig = null)
    {
        string dir = TestPaths.TempDir();
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
