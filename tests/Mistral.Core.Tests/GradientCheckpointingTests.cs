using Mistral.Core.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

/// <summary>
/// Activation checkpointing of the decoder layers: a training step with it must give the loss and every gradient of
/// the same step without it (CPU, float32, tiny random model), keep dropout masks (random state restored), leak no
/// tensor handles and leave eval / no_grad forwards alone.
/// </summary>
[Collection("default generator")]
public sealed class GradientCheckpointingTests(ITestOutputHelper output)
{
    private const long Seq = 10;

    private static long Live => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    /// <summary>A training step: the loss and a copy of every parameter's gradient (null when it got none).</summary>
    private static (float Loss, Dictionary<string, Tensor?> Grads) Step(MistralForCausalLM model, bool checkpoint, Tensor ids, Tensor? mask = null, long? seed = null)
    {
        model.train();
        model.zero_grad();
        model.GradientCheckpointing = checkpoint;
        if (seed is long s)
        {
            random.manual_seed(s);
        }

        Tensor labels = mask is null ? ids : ids.masked_fill(mask.eq(0), -100);
        float loss;
        using (var scope = NewDisposeScope())
        {
            var output = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = labels });
            output.Loss!.backward();
            loss = output.Loss.item<float>();
        }

        var grads = new Dictionary<string, Tensor?>();
        foreach ((string name, Parameter p) in model.named_parameters())
        {
            using Tensor? g = p.grad;
            grads[name] = g?.detach().clone();
        }

        model.GradientCheckpointing = false;
        return (loss, grads);
    }

    /// <summary>max |a − b| over all gradients; both sides must have a gradient for the same parameters.</summary>
    private static float MaxGradDiff(Dictionary<string, Tensor?> a, Dictionary<string, Tensor?> b)
    {
        a.Keys.Should().BeEquivalentTo(b.Keys);
        float max = 0;
        foreach ((string name, Tensor? ga) in a)
        {
            Tensor? gb = b[name];
            (ga is null).Should().Be(gb is null, $"'{name}' must get a gradient in both runs or in neither");
            if (ga is not null && gb is not null)
            {
                ga.shape.Should().Equal(gb.shape);
                max = Math.Max(max, TensorChecks.MaxAbsDiff(ga, gb));
            }
        }

        return max;
    }

    private static bool AllExactlyEqual(Dictionary<string, Tensor?> a, Dictionary<string, Tensor?> b) =>
        a.All(kv => kv.Value is null ? b[kv.Key] is null : b[kv.Key] is Tensor other && TensorChecks.Exactly(kv.Value, other));

    private static void DisposeAll(params Dictionary<string, Tensor?>[] sets)
    {
        foreach (var set in sets)
        {
            foreach (Tensor? t in set.Values)
            {
                t?.Dispose();
            }
        }
    }

    private static Tensor LeftPaddedMask()
    {
        using var scope = NewDisposeScope();
        Tensor mask = ones([2, Seq], ScalarType.Int64);
        mask[1, TensorIndex.Slice(0, 3)] = tensor(0L);
        return mask.MoveToOuterDisposeScope();
    }

    [Theory]
    [InlineData(false, 6)]    // plain batch, sliding window 6 < sequence 10
    [InlineData(true, 6)]     // left-padded batch (3 pads in row 1), window 6
    [InlineData(false, null)] // full causal attention
    public void AllParametersTrainable_LossAndEveryGradientMatch(bool leftPadded, int? window)
    {
        using var model = TinyModels.RandomModel(TinyModels.Tiny(window));
        using Tensor ids = TinyModels.Ids(seed: 11, batch: 2, seq: Seq);
        using Tensor? mask = leftPadded ? LeftPaddedMask() : null;

        var plain = Step(model, checkpoint: false, ids, mask);
        var checkpointed = Step(model, checkpoint: true, ids, mask);

        float diff = MaxGradDiff(plain.Grads, checkpointed.Grads);
        output.WriteLine($"leftPadded={leftPadded} window={window}: loss {plain.Loss} vs {checkpointed.Loss}, max |grad diff| {diff:E3}, bit-identical {AllExactlyEqual(plain.Grads, checkpointed.Grads)}");
        plain.Grads.Values.Should().NotContainNulls("every parameter trains here, embeddings included (the layer-0 input gradient path)");
        checkpointed.Loss.Should().Be(plain.Loss);
        diff.Should().BeLessThanOrEqualTo(1e-6f);
        AllExactlyEqual(plain.Grads, checkpointed.Grads).Should().BeTrue("the recomputation runs the same kernels on the same inputs");
        DisposeAll(plain.Grads, checkpointed.Grads);
    }

    [Fact]
    public void OnlyQProjTrainable_InputNeedsNoGradient_GradientsStillMatch()
    {
        // LoRA-like: frozen embeddings, so the first layer's input does not require grad; the anchor keeps the
        // checkpointed layers in the graph.
        using var model = TinyModels.RandomModel();
        foreach ((string name, Parameter p) in model.named_parameters())
        {
            p.requires_grad = name.EndsWith("q_proj.weight", StringComparison.Ordinal);
        }

        using Tensor ids = TinyModels.Ids(seed: 12, batch: 2, seq: Seq);
        using Tensor mask = LeftPaddedMask();
        var plain = Step(model, checkpoint: false, ids, mask);
        var checkpointed = Step(model, checkpoint: true, ids, mask);

        float diff = MaxGradDiff(plain.Grads, checkpointed.Grads);
        output.WriteLine($"q_proj only: loss {plain.Loss} vs {checkpointed.Loss}, max |grad diff| {diff:E3}");
        plain.Grads.Where(kv => kv.Value is not null).Select(kv => kv.Key).Should()
            .BeEquivalentTo(["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight"]);
        TensorChecks.MaxAbs(plain.Grads["model.layers.0.self_attn.q_proj.weight"]!).Should().BeGreaterThan(1e-4f);
        checkpointed.Loss.Should().Be(plain.Loss);
        diff.Should().BeLessThanOrEqualTo(1e-6f);
        AllExactlyEqual(plain.Grads, checkpointed.Grads).Should().BeTrue();
        DisposeAll(plain.Grads, checkpointed.Grads);
    }

    /// <summary>Applies dropout (training mode only) to the input of a wrapped projection, like LoRA's dropout.</summary>
    private sealed class DropoutInput : nn.Module<Tensor, Tensor>
    {
        private readonly double p;
        private nn.Module<Tensor, Tensor> inner;

        public DropoutInput(nn.Module<Tensor, Tensor> inner, double p)
            : base(nameof(DropoutInput))
        {
            this.inner = inner;
            this.p = p;
            RegisterComponents();
        }

        /// <summary>The scaled keep-mask of every call, in call order.</summary>
        public List<Tensor> Masks { get; } = [];

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            Tensor mask = nn.functional.dropout(ones_like(x), p, training);
            Masks.Add(mask.detach().clone().DetachFromDisposeScope());
            return inner.forward(x * mask).MoveToOuterDisposeScope();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                Masks.ForEach(m => m.Dispose());
            }

            base.Dispose(disposing);
        }
    }

    private static MistralForCausalLM ModelWithDropout(List<DropoutInput>? modules = null)
    {
        var model = TinyModels.RandomModel();
        foreach (string path in new[] { "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.o_proj", "model.layers.1.mlp.up_proj" })
        {
            var old = (nn.Module<Tensor, Tensor>)ModuleTree.Get(model, path);
            var dropout = new DropoutInput(old, 0.3);
            ModuleTree.Replace(model, path, dropout);
            modules?.Add(dropout);
        }

        return model;
    }

    [Fact]
    public void Dropout_SameSeed_RecomputationSeesTheForwardsMasks()
    {
        var dropouts = new List<DropoutInput>();
        using var model = ModelWithDropout(dropouts);
        using Tensor ids = TinyModels.Ids(seed: 13, batch: 2, seq: Seq);

        var plain = Step(model, checkpoint: false, ids, seed: 1234);
        using Tensor afterPlain = rand(8);
        dropouts.Should().AllSatisfy(d => d.Masks.Should().HaveCount(1));
        var checkpointed = Step(model, checkpoint: true, ids, seed: 1234);
        using Tensor afterCheckpointed = rand(8);

        // Each dropout ran in the forward and again in the recomputation, drawing the plain run's mask both times.
        foreach (DropoutInput d in dropouts)
        {
            d.Masks.Should().HaveCount(3);
            TensorChecks.MaxAbs(d.Masks[0]).Should().BeGreaterThan(1f, "kept entries are scaled by 1 / (1 − p)");
            d.Masks[0].eq(0).any().item<bool>().Should().BeTrue("some entries are dropped");
            TensorChecks.Exactly(d.Masks[1], d.Masks[0]).Should().BeTrue();
            TensorChecks.Exactly(d.Masks[2], d.Masks[0]).Should().BeTrue();
        }

        var otherSeed = Step(model, checkpoint: true, ids, seed: 4321);

        float diff = MaxGradDiff(plain.Grads, checkpointed.Grads);
        float seedEffect = MaxGradDiff(plain.Grads, otherSeed.Grads);
        output.WriteLine($"dropout 0.3: loss {plain.Loss} vs {checkpointed.Loss} (other seed {otherSeed.Loss}); max |grad diff| {diff:E3}; other seed differs by {seedEffect:E3}");

        // The masks matter (another seed changes the gradients a lot), yet the same seed reproduces them exactly:
        // without restoring the random state the recomputation would draw new masks and the gradients would differ.
        seedEffect.Should().BeGreaterThan(1e-3f);
        checkpointed.Loss.Should().Be(plain.Loss);
        diff.Should().BeLessThanOrEqualTo(1e-6f);
        AllExactlyEqual(plain.Grads, checkpointed.Grads).Should().BeTrue();
        // The state current before each recomputation is restored: the stream after the step is the plain run's.
        TensorChecks.Exactly(afterPlain, afterCheckpointed).Should().BeTrue();
        DisposeAll(plain.Grads, checkpointed.Grads, otherSeed.Grads);
    }

    /// <summary>Records whether grad was enabled each time the wrapped projection ran.</summary>
    private sealed class GradModeRecorder : nn.Module<Tensor, Tensor>
    {
        private nn.Module<Tensor, Tensor> inner;

        public GradModeRecorder(nn.Module<Tensor, Tensor> inner)
            : base(nameof(GradModeRecorder))
        {
            this.inner = inner;
            RegisterComponents();
        }

        public List<bool> Calls { get; } = [];

        public override Tensor forward(Tensor x)
        {
            Calls.Add(is_grad_enabled());
            return inner.forward(x);
        }
    }

    [Theory]
    [InlineData("all", false, new[] { true })]
    [InlineData("all", true, new[] { false, true })]
    [InlineData("q_proj", true, new[] { false, true })]
    [InlineData("none", true, new[] { true })]
    public void CheckpointedLayers_RunWithoutGrad_ThenAgainWithGradInBackward(string trainable, bool checkpoint, bool[] expectedCalls)
    {
        using var model = TinyModels.RandomModel();
        var recorders = new List<GradModeRecorder>();
        foreach (string path in new[] { "model.layers.0.mlp.gate_proj", "model.layers.1.mlp.gate_proj" })
        {
            var recorder = new GradModeRecorder((nn.Module<Tensor, Tensor>)ModuleTree.Get(model, path));
            ModuleTree.Replace(model, path, recorder);
            recorders.Add(recorder);
        }

        foreach ((string name, Parameter p) in model.named_parameters())
        {
            p.requires_grad = trainable == "all" || (trainable == "q_proj" && name.EndsWith("q_proj.weight", StringComparison.Ordinal));
        }

        using Tensor ids = TinyModels.Ids(seed: 17, batch: 2, seq: Seq);
        model.train();
        model.GradientCheckpointing = checkpoint;
        using (var scope = NewDisposeScope())
        {
            var outputs = model.forward(new CausalLMInput(ids) { Labels = ids });
            outputs.Loss!.requires_grad.Should().Be(trainable != "none");
            if (outputs.Loss.requires_grad)
            {
                outputs.Loss.backward();
            }
        }

        // Checkpointed: the forward keeps no activations (grad off) and backward re-runs the layer with grad.
        // Nothing to train: no graph, so no checkpointing either.
        recorders.Should().AllSatisfy(r => r.Calls.Should().Equal(expectedCalls));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void NoTensorHandleLeaks_WithOrWithoutBackward(bool runBackward)
    {
        using var model = TinyModels.RandomModel();
        using Tensor ids = TinyModels.Ids(seed: 14, batch: 2, seq: Seq);
        using Tensor mask = LeftPaddedMask();
        model.train();
        using (var warmUp = NewDisposeScope())
        {
            // The first forward fills the rotary module's lazily built tables (handles kept on purpose).
            model.forward(new CausalLMInput(ids) { AttentionMask = mask });
        }

        model.GradientCheckpointing = true;
        for (int round = 0; round < 2; round++)
        {
            model.zero_grad();
            long before = Live;
            int nodesBefore = AutogradNodes.Alive();
            long createdByBackward = 0;
            using (var scope = NewDisposeScope())
            {
                var outputs = model.forward(new CausalLMInput(ids) { AttentionMask = mask, Labels = ids });
                AutogradNodes.Alive().Should().Be(nodesBefore + 2, "one checkpoint node per layer while the graph lives");
                if (runBackward)
                {
                    long beforeBackward = Live;
                    outputs.Loss!.backward();
                    createdByBackward = Live - beforeBackward;
                }
            }

            long after = Live;
            output.WriteLine($"backward={runBackward} round {round}: live handles {before} -> {after}; left by backward inside the scope: {createdByBackward}");
            AutogradNodes.Alive().Should().Be(nodesBefore, "freeing the graph deletes the nodes and with them the saved input, context and random state");
            after.Should().Be(before, "every handle the checkpointed forward/backward made is released with the caller's scope");
            // Incoming gradients are disposed and returned ones handed off: at most the first layer's input gradient is
            // still held by the caller's scope when backward returns (2 layers would otherwise leave 2 + 2).
            createdByBackward.Should().BeLessThanOrEqualTo(1);
        }
    }

    [Fact]
    public void EvalModeAndNoGrad_AreUnaffected()
    {
        using var model = TinyModels.RandomModel();
        using Tensor ids = TinyModels.Ids(seed: 15, batch: 2, seq: Seq);
        using Tensor mask = LeftPaddedMask();
        using Tensor reference = TinyModels.Logits(model, ids, mask);

        model.GradientCheckpointing = true;
        model.eval();
        model.Model.IsCheckpointingActive.Should().BeFalse("eval mode");
        using (var evalOut = model.forward(new CausalLMInput(ids) { AttentionMask = mask }))
        {
            TensorChecks.Exactly(evalOut.Logits, reference).Should().BeTrue();
        }

        model.train();
        model.Model.IsCheckpointingActive.Should().BeTrue();
        using (no_grad())
        {
            model.Model.IsCheckpointingActive.Should().BeFalse("grad disabled");
            using var noGradOut = model.forward(new CausalLMInput(ids) { AttentionMask = mask });
            TensorChecks.Exactly(noGradOut.Logits, reference).Should().BeTrue();
            noGradOut.Logits.requires_grad.Should().BeFalse();
        }

        using (var trainOut = model.forward(new CausalLMInput(ids) { AttentionMask = mask }))
        {
            TensorChecks.Exactly(trainOut.Logits, reference).Should().BeTrue("the checkpointed forward computes the same values");
            trainOut.Logits.requires_grad.Should().BeTrue();
        }

        model.GradientCheckpointing = false;
        model.Model.GradientCheckpointing.Should().BeFalse("MistralForCausalLM forwards the setting to its stack");
    }

    [Fact]
    public void KvCache_IsRefusedWhileCheckpointing_AndAllowedInEval()
    {
        using var model = TinyModels.RandomModel();
        using Tensor ids = TinyModels.Ids(seed: 16, batch: 1, seq: 4);
        model.GradientCheckpointing = true;
        model.train();
        using (var cache = new KvCache(model.Config, 1, 8, ScalarType.Float32, CPU))
        {
            var act = () => model.forward(new CausalLMInput(ids) { Cache = cache });
            act.Should().Throw<InvalidOperationException>().WithMessage("*checkpointing*KV cache*");
            cache.Length.Should().Be(0, "the cache is not touched by the refused call");
        }

        model.eval();
        using (var cache = new KvCache(model.Config, 1, 8, ScalarType.Float32, CPU))
        {
            using var outputs = model.forward(new CausalLMInput(ids) { Cache = cache });
            outputs.Logits.shape.Should().Equal([1, 4, 97]);
        }
    }
}
