using Mistral.Core.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

/// <summary>
/// <see cref="CausalLMInput.LossOnly"/>: the chunked, fused lm_head + cross-entropy must give the loss and every
/// gradient of the ordinary path (full float32 logits, then <see cref="MistralForCausalLM.CausalLoss"/>) on a tiny
/// random model (CPU, float32 and bfloat16), for chunk sizes that do and do not divide the rows, with −100 labels,
/// left padding, a trainable or frozen lm_head and gradient checkpointing.
/// </summary>
[Collection("default generator")]
public sealed class ChunkedLossTests(ITestOutputHelper output)
{
    private const long Batch = 2;
    private const long Seq = 10;

    /// <summary>One bfloat16 step relative to a value's magnitude (8 significant bits).</summary>
    private const float BFloat16Step = 1f / 256;

    private static long Live => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    /// <summary>Row 1 left-padded by 3; labels −100 on the pads, on row 0's 4-token "prompt" and at row 1 position 6.</summary>
    private static (Tensor Ids, Tensor Mask, Tensor Labels) Batch2()
    {
        using var scope = NewDisposeScope();
        Tensor ids = TinyModels.Ids(seed: 21, batch: Batch, seq: Seq);
        Tensor mask = ones([Batch, Seq], ScalarType.Int64);
        mask[1, TensorIndex.Slice(0, 3)] = tensor(0L);
        Tensor labels = ids.masked_fill(mask.eq(0), -100);
        labels[0, TensorIndex.Slice(0, 4)] = tensor(-100L);
        labels[1, 6] = tensor(-100L);
        return (ids.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope());
    }

    /// <summary>A training step: the loss and a copy of every parameter's gradient (null when it got none).</summary>
    private static (float Loss, Dictionary<string, Tensor?> Grads) Step(MistralForCausalLM model, Tensor ids, Tensor? mask, Tensor labels,
        bool lossOnly, long chunkRows = 7, bool checkpoint = false)
    {
        model.train();
        model.zero_grad();
        model.GradientCheckpointing = checkpoint;
        model.LossChunkRows = chunkRows;
        float loss;
        using (var scope = NewDisposeScope())
        {
            var result = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels, LossOnly = lossOnly });
            result.HasLogits.Should().Be(!lossOnly);
            result.Loss!.dtype.Should().Be(ScalarType.Float32);
            result.Loss.shape.Should().BeEmpty();
            result.Loss.backward();
            loss = result.Loss.item<float>();
        }

        var grads = new Dictionary<string, Tensor?>();
        foreach ((string name, Parameter p) in model.named_parameters())
        {
            using Tensor? g = p.grad;
            grads[name] = g?.detach().clone();
        }

        model.GradientCheckpointing = false;
        model.eval();
        return (loss, grads);
    }

    /// <summary>max over parameters of max |a − b| / max |b|; both sides must have a gradient for the same parameters.</summary>
    private static float MaxRelativeGradDiff(Dictionary<string, Tensor?> a, Dictionary<string, Tensor?> b, out string worst)
    {
        a.Keys.Should().BeEquivalentTo(b.Keys);
        float max = 0;
        worst = "";
        foreach ((string name, Tensor? ga) in a)
        {
            Tensor? gb = b[name];
            (ga is null).Should().Be(gb is null, $"'{name}' must get a gradient in both runs or in neither");
            if (ga is not null && gb is not null)
            {
                ga.shape.Should().Equal(gb.shape);
                ga.dtype.Should().Be(gb.dtype);
                using Tensor gb32 = gb.to_type(ScalarType.Float32);
                float scale = TensorChecks.MaxAbs(gb32);
                scale.Should().BeGreaterThan(0, $"'{name}' gets a nonzero gradient");
                float d = TensorChecks.MaxAbsDiff(ga, gb) / scale;
                if (d >= max)
                {
                    (max, worst) = (d, name);
                }
            }
        }

        return max;
    }

    /// <summary>
    /// The full-logits step and the loss-only step of <paramref name="model"/> on <see cref="Batch2"/>: both losses, both
    /// gradient sets (the caller disposes them) and their largest relative difference, written to the test output.
    /// </summary>
    private (float Loss, float ExpectedLoss, float GradDiff, Dictionary<string, Tensor?> Actual, Dictionary<string, Tensor?> Expected) CompareWithUnchunked(
        MistralForCausalLM model, long chunkRows, string label, bool checkpoint = false)
    {
        var (ids, mask, labels) = Batch2();
        using (ids)
        using (mask)
        using (labels)
        {
            var (expectedLoss, expected) = Step(model, ids, mask, labels, lossOnly: false);
            var (loss, actual) = Step(model, ids, mask, labels, lossOnly: true, chunkRows, checkpoint);
            float dGrad = MaxRelativeGradDiff(actual, expected, out string worst);
            output.WriteLine($"{label}: loss {loss:R} vs {expectedLoss:R}; max relative gradient difference {dGrad:E2} ({worst})");
            return (loss, expectedLoss, dGrad, actual, expected);
        }
    }

    private static void DisposeAll(params Dictionary<string, Tensor?>[] sets)
    {
        foreach (var t in sets.SelectMany(s => s.Values))
        {
            t?.Dispose();
        }
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(3L)]
    [InlineData(7L)]   // 20 rows: chunks of 7, 7, 6
    [InlineData(20L)]  // one chunk of all rows
    [InlineData(64L)]  // a chunk larger than the rows
    public void Float32_AllTrainable_LossAndEveryGradientMatchTheUnchunkedPath(long chunkRows)
    {
        using var model = TinyModels.RandomModel();
        var (loss, expectedLoss, dGrad, actual, expected) = CompareWithUnchunked(model, chunkRows, $"chunk {chunkRows}");
        expected["lm_head.weight"].Should().NotBeNull();
        Math.Abs(loss - expectedLoss).Should().BeLessThanOrEqualTo(1e-6f * expectedLoss);
        dGrad.Should().BeLessThan(1e-6f);
        DisposeAll(expected, actual);
    }

    [Theory]
    [InlineData(3L)]
    [InlineData(7L)]
    [InlineData(64L)]
    public void BFloat16_AllTrainable_LossAndEveryGradientMatchTheUnchunkedPath(long chunkRows)
    {
        using var model = TinyModels.RandomModel(dtype: ScalarType.BFloat16);
        var (loss, expectedLoss, dGrad, actual, expected) = CompareWithUnchunked(model, chunkRows, $"chunk {chunkRows}");
        // The logits are the same bf16 values; the loss differs by float32 summation order only.
        Math.Abs(loss - expectedLoss).Should().BeLessThanOrEqualTo(1e-6f * expectedLoss);
        // Gradients: the float32 logits gradient is rounded to bf16 as in the unchunked graph, so they are
        // bit-identical on this CPU (0); an element whose float32 value differed in its last bits could round to the
        // neighbouring bf16 value, hence one bf16 step of the largest gradient as the bound.
        dGrad.Should().BeLessThanOrEqualTo(BFloat16Step);
        DisposeAll(expected, actual);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void FrozenLmHead_LayerGradientsMatch_AndLmHeadGetsNone(ScalarType dtype)
    {
        using var model = TinyModels.RandomModel(dtype: dtype);
        model.LmHead.parameters().Single().requires_grad = false;
        var (loss, expectedLoss, dGrad, actual, expected) = CompareWithUnchunked(model, chunkRows: 3, $"{dtype}");
        actual["lm_head.weight"].Should().BeNull();
        Math.Abs(loss - expectedLoss).Should().BeLessThanOrEqualTo(1e-6f * expectedLoss);
        dGrad.Should().BeLessThan(dtype == ScalarType.Float32 ? 1e-6f : BFloat16Step);
        DisposeAll(expected, actual);
    }

    [Fact]
    public void OnlyLmHeadTrainable_HiddenStatesNeedNoGradient_LmHeadGradientMatches()
    {
        using var model = TinyModels.RandomModel();
        foreach (var p in model.parameters())
        {
            p.requires_grad = false;
        }

        model.LmHead.parameters().Single().requires_grad = true;
        var (loss, expectedLoss, dGrad, actual, expected) = CompareWithUnchunked(model, chunkRows: 6, "lm_head only");
        actual.Where(kv => kv.Value is not null).Select(kv => kv.Key).Should().Equal("lm_head.weight");
        Math.Abs(loss - expectedLoss).Should().BeLessThanOrEqualTo(1e-6f * expectedLoss);
        dGrad.Should().BeLessThan(1e-6f);
        DisposeAll(expected, actual);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void GradientCheckpointing_LossAndEveryGradientMatchTheUnchunkedPath(ScalarType dtype)
    {
        using var model = TinyModels.RandomModel(dtype: dtype);
        var (loss, expectedLoss, dGrad, actual, expected) = CompareWithUnchunked(model, chunkRows: 7, $"{dtype}", checkpoint: true);
        Math.Abs(loss - expectedLoss).Should().BeLessThanOrEqualTo(1e-6f * expectedLoss);
        dGrad.Should().BeLessThan(dtype == ScalarType.Float32 ? 1e-6f : BFloat16Step);
        DisposeAll(expected, actual);
    }

    [Fact]
    public void LossOnlyOutput_HasNoLogits_AndReadingThemThrows()
    {
        using var model = TinyModels.RandomModel();
        var (ids, mask, labels) = Batch2();
        using (ids)
        using (mask)
        using (labels)
        {
            using var full = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels });
            using var lossOnly = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels, LossOnly = true });
            full.HasLogits.Should().BeTrue();
            lossOnly.HasLogits.Should().BeFalse();
            Action read = () => _ = lossOnly.Logits;
            read.Should().Throw<InvalidOperationException>().WithMessage("*LossOnly*");
            lossOnly.ToString().Should().Contain("loss only");
            float expected = full.Loss!.item<float>();
            lossOnly.Loss!.item<float>().Should().BeApproximately(expected, 1e-6f * expected);
        }
    }

    [Fact]
    public void NoGradAndInferenceMode_LossEqualsTheUnchunkedPath()
    {
        using var model = TinyModels.RandomModel();
        model.LossChunkRows = 7;
        var (ids, mask, labels) = Batch2();
        using (ids)
        using (mask)
        using (labels)
        {
            float expected;
            using (no_grad())
            using (var full = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels }))
            {
                expected = full.Loss!.item<float>();
            }

            using (no_grad())
            using (var lossOnly = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels, LossOnly = true }))
            {
                lossOnly.Loss!.requires_grad.Should().BeFalse();
                lossOnly.Loss.item<float>().Should().BeApproximately(expected, 1e-6f * expected);
            }

            using (inference_mode())
            using (var lossOnly = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels, LossOnly = true }))
            {
                lossOnly.Loss!.item<float>().Should().BeApproximately(expected, 1e-6f * expected);
            }
        }
    }

    [Fact]
    public void LossOnlyWithoutLabels_Throws()
    {
        using var model = TinyModels.RandomModel();
        using Tensor ids = TinyModels.Ids(seed: 22, batch: 1, seq: 4);
        Action run = () => model.forward(new CausalLMInput(ids) { LossOnly = true });
        run.Should().Throw<ArgumentException>().WithMessage("*LossOnly*Labels*");
    }

    [Fact]
    public void AllLabelsIgnored_LossIsNaNAsTheUnchunkedPath_AndGradientsAreZero()
    {
        using var model = TinyModels.RandomModel();
        using Tensor ids = TinyModels.Ids(seed: 23, batch: Batch, seq: Seq);
        using Tensor labels = full([Batch, Seq], -100L, ScalarType.Int64);
        var (expectedLoss, expected) = Step(model, ids, null, labels, lossOnly: false);
        var (loss, actual) = Step(model, ids, null, labels, lossOnly: true, chunkRows: 7);
        output.WriteLine($"all labels −100: loss {loss} vs {expectedLoss}");
        float.IsNaN(expectedLoss).Should().BeTrue("cross_entropy's mean over no target is 0/0");
        float.IsNaN(loss).Should().BeTrue();
        foreach ((string name, Tensor? g) in actual)
        {
            using Tensor e = expected[name]!.to_type(ScalarType.Float32);
            TensorChecks.MaxAbs(e).Should().Be(0f, $"the unchunked path gives '{name}' a zero gradient");
            TensorChecks.MaxAbs(g!).Should().Be(0f, $"'{name}' gets a zero gradient");
        }

        DisposeAll(expected, actual);
    }

    [Fact]
    public void ReplacedLmHead_FallsBackToTheUnchunkedPath()
    {
        using var model = TinyModels.RandomModel();
        var config = model.Config;
        var head = new Mistral.Core.Modeling.Linear(config.HiddenSize, config.VocabSize, true, ScalarType.Float32, CPU);
        using (no_grad())
        {
            using var gen = new Generator(5);
            head.Weight.copy_(0.1f * randn(head.Weight.shape, generator: gen));
            head.Bias!.copy_(0.1f * randn(head.Bias.shape, generator: gen));
        }

        model.ReplaceChild("lm_head", head);
        model.LmHead.Should().BeSameAs(head);
        var (loss, expectedLoss, dGrad, actual, expected) = CompareWithUnchunked(model, chunkRows: 7, "biased lm_head");
        actual["lm_head.bias"].Should().NotBeNull();
        loss.Should().Be(expectedLoss, "the same ops run (bias: no chunked path)");
        dGrad.Should().Be(0f);
        DisposeAll(expected, actual);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void NoTensorHandleOrAutogradNodeLeaks_WithOrWithoutBackward(bool runBackward)
    {
        using var model = TinyModels.RandomModel();
        var (ids, mask, labels) = Batch2();
        using (ids)
        using (mask)
        using (labels)
        {
            model.train();
            model.LossChunkRows = 7;
            using (var warmUp = NewDisposeScope())
            {
                // The first forward fills the rotary module's lazily built tables (handles kept on purpose).
                model.forward(new CausalLMInput(ids) { AttentionMask = mask });
            }

            for (int round = 0; round < 2; round++)
            {
                model.zero_grad();
                long before = Live;
                int nodesBefore = AutogradNodes.Alive();
                using (var scope = NewDisposeScope())
                {
                    var result = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels, LossOnly = true });
                    AutogradNodes.Alive().Should().Be(nodesBefore + 1, "one chunked-loss node while the graph lives");
                    if (runBackward)
                    {
                        result.Loss!.backward();
                    }
                }

                long after = Live;
                output.WriteLine($"backward={runBackward} round {round}: live handles {before} -> {after}");
                AutogradNodes.Alive().Should().Be(nodesBefore, "freeing the graph deletes the node and with it the saved tensors");
                after.Should().Be(before, "every handle the chunked forward/backward made is released with the caller's scope");
            }

            model.eval();
        }
    }
}
