using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>Runs the HF parity fixtures on a device (the CPU version is in the test suite).</summary>
internal static class ParityCheck
{
    public static int Run(string root, Device device)
    {
        var rows = new List<string>();
        bool ok = true;
        foreach (string folder in Directory.GetDirectories(root).OrderBy(x => x))
        {
            if (!File.Exists(Path.Combine(folder, "reference.safetensors")))
            {
                continue;
            }

            string name = Path.GetFileName(folder);
            MistralConfig config = MistralConfig.FromFile(Path.Combine(folder, "config.json"));
            using var reference = SafeTensorsFile.Open(Path.Combine(folder, "reference.safetensors"));
            foreach (ScalarType dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            {
                using var model = new MistralForCausalLM(config, dtype, device);
                CheckpointLoader.Load(model, folder);
                model.eval();
                using var _ = inference_mode();
                string suffix = dtype == ScalarType.Float32 ? string.Empty : "_bf16";
                using var ids = reference.Load("plain.input_ids", device: device);
                using var labels = ids.clone();
                using var plain = model.forward(new CausalLMInput(ids) { Labels = labels });
                using var expectedPlain = reference.Load("plain.logits" + suffix, device: device);
                float dPlain = (plain.Logits - expectedPlain).abs().max().item<float>();
                float scale = expectedPlain.abs().max().item<float>();

                using var pids = reference.Load("padded.input_ids", device: device);
                using var pmask = reference.Load("padded.attention_mask", device: device);
                using var ppos = reference.Load("padded.position_ids", device: device);
                using var plabels = reference.Load("padded.labels", device: device);
                using var padded = model.forward(new CausalLMInput(pids) { AttentionMask = pmask, PositionIds = ppos, Labels = plabels });
                using var expectedPadded = reference.Load("padded.logits" + suffix, device: device);
                using var realTokens = pmask.to_type(ScalarType.Bool).unsqueeze(-1);
                float dPadded = (padded.Logits - expectedPadded).abs().masked_fill(realTokens.logical_not(), 0).max().item<float>();

                string lossText = "";
                if (dtype == ScalarType.Float32)
                {
                    float dLoss = Math.Abs(plain.Loss!.item<float>() - reference.Load("plain.loss").item<float>());
                    float dLossPadded = Math.Abs(padded.Loss!.item<float>() - reference.Load("padded.loss").item<float>());
                    lossText = $" |Δloss| {dLoss:E2} / {dLossPadded:E2}";
                    ok &= dPlain <= 1e-4 && dPadded <= 1e-4 && dLoss <= 1e-5 && dLossPadded <= 1e-5;
                }

                string genText = "";
                if (dtype == ScalarType.Float32)
                {
                    var gen = new TokenGenerator(model);
                    using var prompt = reference.Load("generate.prompt");
                    using var expected = reference.Load("generate.output");
                    var ours = gen.Generate([prompt.data<long>().Select(x => (int)x).ToArray()], GenerationOptions.Greedy with { MaxNewTokens = (int)(expected.shape[1] - prompt.shape[1]) });
                    long[] exp = expected.data<long>().ToArray().Skip((int)prompt.shape[1]).ToArray();
                    int same = ours.Sequences[0].TokenIds.Zip(exp).Count(p => p.First == p.Second);
                    genText = $" greedy ids {same}/{exp.Length} equal";
                    ok &= same == exp.Length;
                }

                rows.Add($"{name,-12} {dtype,-9} max|Δlogits| plain {dPlain:E2} padded {dPadded:E2} (max|logit| {scale:F2}){lossText}{genText}");
            }
        }

        Console.WriteLine("== parity vs HF fixtures ==");
        rows.ForEach(Console.WriteLine);
        Console.WriteLine(ok ? "PARITY OK" : "PARITY FAILED");
        return ok ? 0 : 1;
    }
}
