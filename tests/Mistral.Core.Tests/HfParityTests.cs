using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

/// <summary>
/// Parity with Hugging Face transformers 5.17 <c>MistralForCausalLM</c> on fixtures made by <c>tools/hf_reference.py</c>
/// (HF on CPU, float32 and bfloat16). gqa4_window: GQA ratio 4, sliding window 8 &lt; 24 tokens; mha_full: no window.
/// </summary>
public class HfParityTests(ITestOutputHelper output)
{
    public static TheoryData<string> Models => new() { "gqa4_window", "mha_full" };

    private static (MistralForCausalLM Model, SafeTensorsFile Reference) Load(string name, ScalarType dtype)
    {
        string folder = TestPaths.FixturePath("hf", name);
        var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(folder, "config.json")), dtype, CPU);
        CheckpointLoader.Load(model, folder);
        model.eval();
        return (model, SafeTensorsFile.Open(Path.Combine(folder, "reference.safetensors")));
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Float32LogitsAndLossMatch(string name)
    {
        var (model, reference) = Load(name, ScalarType.Float32);
        using (model)
        using (reference)
        using (no_grad())
        {
            using var ids = reference.Load("plain.input_ids");
            using var plain = model.forward(new CausalLMInput(ids) { Labels = ids });
            using var expected = reference.Load("plain.logits");
            float dLogits = TensorChecks.MaxAbsDiff(plain.Logits, expected);
            float dLoss = Math.Abs(plain.Loss!.item<float>() - reference.Load("plain.loss").item<float>());
            output.WriteLine($"{name} plain: max|Δlogits| {dLogits:E2}, |Δloss| {dLoss:E2}");
            dLogits.Should().BeLessThanOrEqualTo(1e-4f);
            dLoss.Should().BeLessThanOrEqualTo(1e-5f);
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void LeftPaddedBatchMatchesIncludingTheLoss(string name)
    {
        var (model, reference) = Load(name, ScalarType.Float32);
        using (model)
        using (reference)
        using (no_grad())
        {
            using var ids = reference.Load("padded.input_ids");
            using var mask = reference.Load("padded.attention_mask");
            using var labels = reference.Load("padded.labels");
            using var expected = reference.Load("padded.logits");
            // Position ids derived from the mask (cumsum − 1) equal those HF was given.
            using var derived = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels });
            using var given = model.forward(new CausalLMInput(ids) { AttentionMask = mask, PositionIds = reference.Load("padded.position_ids"), Labels = labels });
            float dLogits = TensorChecks.MaxAbsDiff(derived.Logits, expected);
            float dLoss = Math.Abs(derived.Loss!.item<float>() - reference.Load("padded.loss").item<float>());
            output.WriteLine($"{name} left-padded: max|Δlogits| {dLogits:E2} (every position, padding included), |Δloss| {dLoss:E2}");
            dLogits.Should().BeLessThanOrEqualTo(1e-4f);
            dLoss.Should().BeLessThanOrEqualTo(1e-5f);
            TensorChecks.MaxAbsDiff(given.Logits, derived.Logits).Should().Be(0f);
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void BFloat16ForwardIsWithinHuggingFacesOwnBFloat16Error(string name)
    {
        // bfloat16 keeps 8 significant bits, so a bf16 forward is only as exact as its rounding: HF's own bf16 logits
        // deviate from its float32 logits by e_hf (max) and m_hf (mean), measured on the same inputs. Kernel choices
        // (SDPA variant, matmul blocking, libtorch 2.10 here vs 2.11 there) change which way individual roundings go,
        // so we require statistical equivalence: our mean error against float32 within 1.25 × m_hf, our max error within
        // 1.5 × e_hf, and our distance to HF's bf16 logits within e_hf. Measured (max|logit| ≈ 2.2–2.7): see the output.
        var (model, reference) = Load(name, ScalarType.BFloat16);
        using (model)
        using (reference)
        using (no_grad())
        {
            foreach (string part in new[] { "plain", "padded" })
            {
                using var ids = reference.Load($"{part}.input_ids");
                Tensor? mask = part == "padded" ? reference.Load("padded.attention_mask") : null;
                using var real = (mask ?? ones_like(ids)).to_type(ScalarType.Bool).unsqueeze(-1);
                using var ours = model.forward(new CausalLMInput(ids) { AttentionMask = mask });
                using var hfBf16 = reference.Load($"{part}.logits_bf16");
                using var hfF32 = reference.Load($"{part}.logits");
                ours.Logits.dtype.Should().Be(ScalarType.Float32);
                var (eHf, mHf) = Errors(hfBf16, hfF32, real);
                var (eOurs, mOurs) = Errors(ours.Logits, hfF32, real);
                var (eVsHf, mVsHf) = Errors(ours.Logits, hfBf16, real);
                output.WriteLine($"{name} {part} bf16 vs HF fp32: ours max {eOurs:E2} mean {mOurs:E2}; HF bf16 max {eHf:E2} mean {mHf:E2}; ours vs HF bf16 max {eVsHf:E2} mean {mVsHf:E2}");
                mOurs.Should().BeLessThanOrEqualTo(1.25f * mHf);
                eOurs.Should().BeLessThanOrEqualTo(1.5f * eHf);
                eVsHf.Should().BeLessThanOrEqualTo(eHf);
            }
        }
    }

    private static (float Max, float Mean) Errors(Tensor a, Tensor b, Tensor realTokens)
    {
        using var d = (a - b).abs().masked_select(realTokens.expand(a.shape));
        return (d.max().item<float>(), d.mean().item<float>());
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void GreedyGenerationCrossingTheWindowEqualsHfGenerate(string name)
    {
        var (model, reference) = Load(name, ScalarType.Float32);
        using (model)
        using (reference)
        {
            using var prompt = reference.Load("generate.prompt");
            using var expected = reference.Load("generate.output");
            int promptLength = (int)prompt.shape[1];
            int newTokens = (int)expected.shape[1] - promptLength;
            var result = new TokenGenerator(model).Generate([prompt.data<long>().Select(x => (int)x).ToArray()],
                GenerationOptions.Greedy with { MaxNewTokens = newTokens });
            result.Sequences[0].TokenIds.Select(x => (long)x).Should().Equal(expected.data<long>().ToArray().Skip(promptLength));
            if (model.Config.SlidingWindow is int w)
            {
                (promptLength + newTokens).Should().BeGreaterThan(4 * w, "the generation crosses the window several times");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void BatchedLeftPaddedGenerationEqualsHfGenerate(string name)
    {
        var (model, reference) = Load(name, ScalarType.Float32);
        using (model)
        using (reference)
        {
            using var ids = reference.Load("generate_batch.input_ids");
            using var mask = reference.Load("generate_batch.attention_mask");
            using var expected = reference.Load("generate_batch.output");
            long[] flatIds = ids.data<long>().ToArray();
            long[] flatMask = mask.data<long>().ToArray();
            int width = (int)ids.shape[1];
            var prompts = Enumerable.Range(0, (int)ids.shape[0])
                .Select(r => Enumerable.Range(0, width).Where(c => flatMask[(r * width) + c] == 1).Select(c => (int)flatIds[(r * width) + c]).ToArray())
                .ToArray();
            int newTokens = (int)expected.shape[1] - width;
            var result = new TokenGenerator(model).Generate(prompts, GenerationOptions.Greedy with { MaxNewTokens = newTokens, PadTokenId = 0 });
            long[] flatExpected = expected.data<long>().ToArray();
            for (int r = 0; r < prompts.Length; r++)
            {
                result.Sequences[r].TokenIds.Select(x => (long)x).Should()
                    .Equal(flatExpected.Skip((r * (int)expected.shape[1]) + width).Take(newTokens), $"row {r}");
            }
        }
    }
}
