using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

/// <summary>
/// Parity with Python's PEFT 0.21 (transformers 5.17, torch 2.11) on fixtures made by <c>tools/peft_reference.py</c>
/// over the base <c>tests/fixtures/hf/gqa4_window</c>: (1) PEFT's adapter (random A and B, r 4, alpha 8, all 7
/// projections) loaded here gives PEFT's logits, loss and LoRA gradients; (2) an adapter written here
/// (<c>tests/fixtures/peft/ours</c>) loaded by PEFT gives our logits.
/// </summary>
public class PeftInteropTests(ITestOutputHelper output)
{
    private static string Peft(params string[] parts) => TestPaths.FixturePath(["peft", .. parts]);

    private static MistralForCausalLM LoadBase()
    {
        string folder = TestPaths.FixturePath("hf", "gqa4_window");
        var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(folder, "config.json")), ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, folder);
        return model;
    }

    /// <summary>The adapter of <see cref="OurAdapterLoadedByPeftGivesOurLogits"/>: rsLoRA, a subset of projections, dropout recorded but off in eval.</summary>
    internal static LoraOptions OurOptions => new()
    {
        R = 4,
        Alpha = 6,
        UseRsLora = true,
        Dropout = 0.1,
        TargetModules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"],
        Init = LoraInit.LinearDefault,
        Seed = 20,
    };

    /// <summary>Writes our adapter (<c>PeftAdapter.Save</c>) and <c>our_logits.safetensors</c> (input_ids, logits) into <paramref name="folder"/>.</summary>
    // To regenerate tests/fixtures/peft/ours after changing OurOptions: call WriteOurAdapter(Peft("ours")) once, then
    // rerun tools/peft_reference.py --ours tests/fixtures/peft/ours on the GPU machine.
    internal static void WriteOurAdapter(string folder)
    {
        using var model = LoadBase();
        var lora = LoraInjector.Inject(model, OurOptions);
        model.eval();
        using var ids = ((Func<Tensor>)(() =>
        {
            using var gen = new Generator(77);
            return randint(3, model.Config.VocabSize, [2, 24], ScalarType.Int64, generator: gen);
        }))();
        using var logits = TinyModels.Logits(model, ids);
        PeftAdapter.Save(lora, folder, "tests/fixtures/hf/gqa4_window");
        SafeTensorsWriter.Write(Path.Combine(folder, "our_logits.safetensors"),
            [new("input_ids", ids), new("logits", logits)], new Dictionary<string, string> { ["format"] = "pt" });
    }

    [Fact]
    public void PeftAdapterGivesPeftsLogitsLossAndGradients()
    {
        using var model = LoadBase();
        var lora = PeftAdapter.Load(model, Peft("peft_adapter"));
        lora.Layers.Should().HaveCount(14);
        lora.Options.R.Should().Be(4);
        lora.Options.Scaling.Should().Be(2.0);
        using var reference = SafeTensorsFile.Open(Peft("peft_adapter_reference.safetensors"));
        lora.TrainableParameters().Trainable.Should().Be(long.Parse(reference.Metadata["trainable_params"]));
        lora.TrainableParameters().All.Should().Be(long.Parse(reference.Metadata["all_params"]));

        model.train();
        using var ids = reference.Load("input_ids");
        using var outp = model.forward(new CausalLMInput(ids) { Labels = ids });
        using var expectedLogits = reference.Load("logits");
        using var expectedLoss = reference.Load("loss");
        float dLogits = TensorChecks.MaxAbs(outp.Logits.detach() - expectedLogits);
        float dLoss = Math.Abs(outp.Loss!.item<float>() - expectedLoss.item<float>());
        float effect;
        using (var disabled = lora.AdaptersDisabled())
        using (var baseLogits = TinyModels.Logits(model, ids))
        {
            effect = TensorChecks.MaxAbs(baseLogits - expectedLogits);
        }

        outp.Loss!.backward();
        double worst = 0;
        string worstKey = "";
        foreach (var (key, p) in lora.NamedAdapterParameters())
        {
            using var g = reference.Load("grad." + key);
            double rel = LoraLinearTests.RelativeError(p.grad!, g);
            if (rel > worst)
            {
                (worst, worstKey) = (rel, key);
            }
        }

        output.WriteLine($"adapter changes PEFT's logits by {effect:E2}; ours vs PEFT: max|Δlogits| {dLogits:E2}, |Δloss| {dLoss:E2}, worst gradient relative error {worst:E2} ({worstKey})");
        effect.Should().BeGreaterThan(0.1f, "the reference adapter must matter");
        dLogits.Should().BeLessThanOrEqualTo(1e-4f);
        dLoss.Should().BeLessThanOrEqualTo(1e-5f);
        worst.Should().BeLessThanOrEqualTo(1e-5);
        reference.Tensors.Keys.Count(k => k.StartsWith("grad.", StringComparison.Ordinal)).Should().Be(lora.NamedAdapterParameters().Count);
    }

    [Fact]
    public void PeftsConfigParsesAndOurSaveReproducesItsTensorsAndKeys()
    {
        var config = PeftAdapter.ReadConfig(Peft("peft_adapter"));
        config.InitLoraWeights.Should().Be(LoraInit.LinearDefault);
        config.TargetModules.Should().BeEquivalentTo(LoraOptions.AllProjections);
        using var model = LoadBase();
        var lora = PeftAdapter.Load(model, Peft("peft_adapter"));
        string dir = TestPaths.TempDir();
        try
        {
            PeftAdapter.Save(lora, dir);
            using var theirs = SafeTensorsFile.Open(Peft("peft_adapter", "adapter_model.safetensors"));
            using var ours = SafeTensorsFile.Open(Path.Combine(dir, "adapter_model.safetensors"));
            ours.Tensors.Keys.Should().BeEquivalentTo(theirs.Tensors.Keys);
            ours.Metadata.Should().Contain(theirs.Metadata);
            ours.Metadata.Keys.Except(theirs.Metadata.Keys).Should().BeEquivalentTo(["lora_r", "lora_alpha"], "PEFT ignores extra metadata; ours records the config's r and alpha");
            foreach (string key in theirs.Tensors.Keys)
            {
                ours.Tensors[key].Shape.Should().Equal(theirs.Tensors[key].Shape);
                ours.Tensors[key].DTypeName.Should().Be(theirs.Tensors[key].DTypeName);
                ours.ReadBytes(key).Should().Equal(theirs.ReadBytes(key), key);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void OurAdapterLoadedByPeftGivesOurLogits()
    {
        // The committed folder is exactly what our code writes (same seed), and PEFT's logits for it match ours.
        string dir = TestPaths.TempDir();
        try
        {
            WriteOurAdapter(dir);
            File.ReadAllText(Path.Combine(dir, "adapter_config.json")).Should().Be(File.ReadAllText(Peft("ours", "adapter_config.json")));
            File.ReadAllBytes(Path.Combine(dir, "our_logits.safetensors")).Should().Equal(File.ReadAllBytes(Peft("ours", "our_logits.safetensors")));
            using (var written = SafeTensorsFile.Open(Path.Combine(dir, "adapter_model.safetensors")))
            using (var committed = SafeTensorsFile.Open(Peft("ours", "adapter_model.safetensors")))
            {
                // Same tensors byte for byte; the metadata now also records r and lora_alpha (issue 11), which PEFT ignores.
                written.Tensors.Keys.Should().Equal(committed.Tensors.Keys);
                foreach (string key in committed.Tensors.Keys)
                {
                    written.ReadBytes(key).Should().Equal(committed.ReadBytes(key), key);
                }

                written.Metadata.Should().BeEquivalentTo(new Dictionary<string, string>(committed.Metadata) { ["lora_r"] = "4", ["lora_alpha"] = "6" });
            }

            using var ourLogits = SafeTensorsFile.Open(Path.Combine(dir, "our_logits.safetensors"));
            using var peftLogits = SafeTensorsFile.Open(Peft("ours_in_peft_logits.safetensors"));
            using var ids = ourLogits.Load("input_ids");
            using var peftIds = peftLogits.Load("input_ids");
            TensorChecks.Exactly(ids, peftIds).Should().BeTrue();
            using var a = ourLogits.Load("logits");
            using var b = peftLogits.Load("logits");
            float d = TensorChecks.MaxAbs(a - b);
            output.WriteLine($"our adapter in PEFT vs ours: max|Δlogits| {d:E2} (logits up to {TensorChecks.MaxAbs(b):E2})");
            d.Should().BeLessThanOrEqualTo(1e-4f);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
