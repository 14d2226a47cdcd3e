using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Quantization;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using DenseLinear = Mistral.Core.Modeling.Linear;

namespace Mistral.Peft.Tests.QuantizedModel;

/// <summary>Quantize-while-loading of the tiny HF checkpoint tests/fixtures/hf/gqa4_window (float32, hidden 64, 2 layers, GQA 4).</summary>
public class QuantizedModelLoaderTests(ITestOutputHelper output)
{
    private static readonly QuantizedLoadOptions Float32Options = new()
    {
        DType = ScalarType.Float32,
        Nf4 = new Nf4Options { ComputeDtype = ScalarType.Float32 },
    };

    [Theory]
    [InlineData("gqa4_window")]
    [InlineData("mha_full")]
    public void Float32LogitsEqualADenseModelWithFakeQuantizedProjections(string name)
    {
        using var result = new Disposer(QuantizedModelLoader.Load(TinyCheckpoints.Folder(name), Float32Options).Model);
        using var fake = TinyCheckpoints.Dense(name, ScalarType.Float32, Float32Options.Nf4);
        using var plain = TinyCheckpoints.Dense(name, ScalarType.Float32, null);
        foreach (var (ids, mask) in TinyCheckpoints.Inputs(name))
        {
            using var scope = NewDisposeScope();
            var q = TinyModels.Logits(result.Model, ids, mask);
            var f = TinyModels.Logits(fake, ids, mask);
            var p = TinyModels.Logits(plain, ids, mask);
            float vsFake = TensorChecks.MaxAbsDiff(q, f);
            float vsPlain = TensorChecks.MaxAbsDiff(q, p);
            output.WriteLine($"{name} {(mask is null ? "plain" : "padded")}: max|4-bit − fake-quantized| {vsFake:E2}, max|4-bit − unquantized| {vsPlain:E2}");
            vsFake.Should().BeLessThanOrEqualTo(1e-5f);
            // The quantization really happened: NF4 moves the logits far more than the tolerance above.
            vsPlain.Should().BeGreaterThan(1e-3f);
        }
    }

    [Fact]
    public void BFloat16LogitsEqualABFloat16FakeQuantizedModelAndItsErrorIsWithinHuggingFacesOwnBFloat16Error()
    {
        using var result = new Disposer(QuantizedModelLoader.Load(TinyCheckpoints.Folder()).Model);
        result.Model.DType.Should().Be(ScalarType.BFloat16);
        using var fakeBf16 = TinyCheckpoints.Dense("gqa4_window", ScalarType.BFloat16, new Nf4Options());
        // The same numbers in float32: projections = dequant(the 4-bit model's own codes) in float32, every other
        // tensor = the 4-bit model's bf16 value widened. Only the compute dtype differs.
        using var sameWeightsF32 = TinyCheckpoints.Dense("gqa4_window", ScalarType.Float32, null);
        using (no_grad())
        {
            var dense = ModuleTree.NamedModules(sameWeightsF32).ToDictionary(m => m.Name, m => m.Module);
            foreach (var (name, module) in ModuleTree.NamedModules(result.Model))
            {
                if (module is Linear4bit layer)
                {
                    using var w = layer.QuantizedWeight();
                    using var deq = w.Dequantize(ScalarType.Float32);
                    ((DenseLinear)dense[name]).Weight.copy_(deq);
                }
                else
                {
                    foreach (var (local, p) in module.named_parameters(recurse: false))
                    {
                        dense[name].named_parameters(recurse: false).Single(x => x.name == local).parameter.copy_(p.to(ScalarType.Float32));
                    }
                }
            }
        }

        using var reference = SafeTensorsFile.Open(Path.Combine(TinyCheckpoints.Folder(), "reference.safetensors"));
        foreach (var (ids, mask) in TinyCheckpoints.Inputs())
        {
            using var scope = NewDisposeScope();
            string which = mask is null ? "plain" : "padded";
            var q = TinyModels.Logits(result.Model, ids, mask);
            var sameDtype = TensorChecks.MaxAbsDiff(q, TinyModels.Logits(fakeBf16, ids, mask));
            var f32 = TinyModels.Logits(sameWeightsF32, ids, mask);
            var ours = (q - f32).abs();
            var hf = (reference.Load(which + ".logits_bf16") - reference.Load(which + ".logits")).abs();
            float oursMax = ours.max().item<float>(), oursMean = ours.mean().item<float>();
            float hfMax = hf.max().item<float>(), hfMean = hf.mean().item<float>();
            output.WriteLine($"bf16 {which}: max|4-bit − bf16 fake-quantized| {sameDtype:E2}; 4-bit bf16 vs same weights in fp32: max {oursMax:E2}, mean {oursMean:E2}; HF's own bf16 vs fp32: max {hfMax:E2}, mean {hfMean:E2}");
            // Same weights, same bf16 operations: bit-identical.
            sameDtype.Should().Be(0f);
            // The bf16 compute error is no larger than HF's own bf16 forward has on this model (which also rounds the
            // weights): measured max 3.61e-2 / 3.47e-2 vs HF 3.88e-2 / 3.84e-2, mean 5.50e-3 / 4.59e-3 vs 5.90e-3 / 5.50e-3.
            oursMean.Should().BeLessThanOrEqualTo(1.1f * hfMean);
            oursMax.Should().BeLessThanOrEqualTo(1.1f * hfMax);
        }
    }

    [Fact]
    public void EveryProjectionIsNf4AndNothingIsLeftOnMeta()
    {
        var progress = new List<CheckpointLoadProgress>();
        var result = QuantizedModelLoader.Load(TinyCheckpoints.Folder(), new QuantizedLoadOptions(), new SyncProgress(progress.Add));
        using var model = result.Model;
        model.named_parameters().Select(p => p.parameter.device.type).Concat(model.named_buffers().Select(b => b.buffer.device.type))
            .Should().OnlyContain(t => t == DeviceType.CPU);
        var modules = ModuleTree.NamedModules(model).ToDictionary(m => m.Name, m => m.Module);
        for (int i = 0; i < 2; i++)
        {
            foreach (var p in TinyCheckpoints.Projections)
            {
                var layer = modules[$"model.layers.{i}.{p}"].Should().BeOfType<Linear4bit>().Subject;
                layer.ComputeDtype.Should().Be(ScalarType.BFloat16);
            }

            modules[$"model.layers.{i}.input_layernorm"].Should().BeOfType<RmsNorm>();
        }

        modules["lm_head"].Should().BeOfType<DenseLinear>();
        modules["model.embed_tokens"].Should().BeOfType<TokenEmbedding>();
        model.parameters().Should().OnlyContain(p => p.dtype == ScalarType.BFloat16);
        result.QuantizedLayers.Should().Be(14);
        result.DenseTensors.Should().Be(2 + 4 + 1);
        result.Prequantized.Should().BeFalse();
        // The fixture's 21 float32 tensors (2 × (7 projections + 2 norms) + embeddings, final norm, lm_head), each reported once, in module order.
        progress.Should().HaveCount(21);
        progress[^1].TensorsLoaded.Should().Be(21);
        progress[^1].TensorsTotal.Should().Be(21);
        progress[^1].BytesLoaded.Should().Be(result.CheckpointBytesRead);
        progress[0].CurrentTensor.Should().Be("model.embed_tokens.weight");
        progress[^1].CurrentTensor.Should().Be("lm_head.weight");
        result.CheckpointBytesRead.Should().Be(new FileInfo(Path.Combine(TinyCheckpoints.Folder(), "model.safetensors")).Length - HeaderBytes());
        // The largest tensor read at once is an embedding table in float32 (320 × 64 × 4), not the model.
        result.LargestTransientBytes.Should().Be(320 * 64 * 4);
    }

    [Fact]
    public void PackedCodesAreBitIdenticalToQuantizingTheCheckpointWeightCastToTheModelDtype()
    {
        using var model = QuantizedModelLoader.Load(TinyCheckpoints.Folder()).Model;
        using var reader = CheckpointReader.Open(TinyCheckpoints.Folder());
        foreach (var (name, module) in ModuleTree.NamedModules(model))
        {
            if (module is not Linear4bit layer)
            {
                continue;
            }

            using var w = reader.Load(name + ".weight", ScalarType.BFloat16);
            using var expected = Nf4Tensor.Quantize(w);
            using var actual = layer.QuantizedWeight();
            TensorChecks.Exactly(actual.Packed, expected.Packed).Should().BeTrue(name);
            TensorChecks.Exactly(actual.Absmax, expected.Absmax).Should().BeTrue(name);
            TensorChecks.Exactly(actual.NestedAbsmax!, expected.NestedAbsmax!).Should().BeTrue(name);
            actual.NestedOffset.Should().Be(expected.NestedOffset);
            actual.DType.Should().Be(ScalarType.BFloat16);
        }
    }

    [Fact]
    public void MemoryIsExactlyTheAnalyticNf4SizePlusTheBFloat16Parts()
    {
        var result = QuantizedModelLoader.Load(TinyCheckpoints.Folder());
        using var model = result.Model;
        long actual = model.named_parameters().Sum(p => p.parameter.numel() * p.parameter.ElementSize)
            + model.named_buffers().Sum(b => b.buffer.numel() * b.buffer.ElementSize);

        // Per layer: q,o [64,64], k,v [16,64], gate,up [160,64], down [64,160]. Each NF4 weight holds ceil(n/2) code
        // bytes, ceil(n/64) uint8 scales, ceil(blocks/256) float32 nested scales, the 256-float map (StorageBytesFor)
        // and a 4-byte float32 nested-offset buffer. Dense bf16: embeddings and lm_head [320,64], 5 norms [64].
        long[] sizes = [64 * 64, 16 * 64, 16 * 64, 64 * 64, 160 * 64, 160 * 64, 64 * 160];
        long perLayer = sizes.Sum(n => Nf4Tensor.StorageBytesFor(n) + 4);
        perLayer.Should().Be((2048 + 64 + 4 + 1024 + 4) * 2 + (512 + 16 + 4 + 1024 + 4) * 2 + (5120 + 160 + 4 + 1024 + 4) * 3);
        long dense = ((2 * 320 * 64) + (5 * 64)) * 2;
        long expected = (2 * perLayer) + dense;
        output.WriteLine($"4-bit tiny model: {actual:N0} bytes = 2 × {perLayer:N0} (NF4 layers) + {dense:N0} (bf16); the float32 checkpoint holds {result.CheckpointBytesRead:N0}.");
        actual.Should().Be(expected);
        result.TotalBytes.Should().Be(expected);
        result.QuantizedBytes.Should().Be(2 * perLayer);
        result.DenseBytes.Should().Be(dense);
        var estimate = QuantizedModelLoader.EstimateBytes(TinyCheckpoints.Config());
        estimate.Should().Be(new QuantizedFootprint(14, 2 * perLayer, dense));
    }

    [Fact]
    public void Mistral7BEstimateMatchesTheHandComputedFootprint()
    {
        var estimate = QuantizedModelLoader.EstimateBytes(MistralConfig.Mistral7B);
        // Per layer: q,o 4096², k,v 1024×4096, gate,up,down 14336×4096 → 218,103,808 weights; 32 layers.
        long perLayerWeights = (2L * 4096 * 4096) + (2L * 1024 * 4096) + (3L * 14336 * 4096);
        perLayerWeights.Should().Be(218_103_808);
        long packed = 32 * perLayerWeights / 2;                       // 3,489,660,928
        long scales = 32 * perLayerWeights / 64;                      // 109,051,904 uint8 scales
        long nested = 32 * ((2 * 1024) + (2 * 256) + (3 * 3584)) * 4; // blocks/256 float32 nested scales (all divide exactly)
        long maps = 32 * 7 * ((256 * 4) + 4);                         // dynamic map + nested offset per layer
        long dense = ((2L * 32000 * 4096) + (65 * 4096)) * 2;         // embed + lm_head + 65 norms, bf16
        estimate.QuantizedLayers.Should().Be(224);
        estimate.QuantizedBytes.Should().Be(packed + scales + nested + maps);
        estimate.DenseBytes.Should().Be(dense);
        output.WriteLine($"Mistral-7B NF4 (double quant) + bf16: {estimate.QuantizedBytes:N0} + {estimate.DenseBytes:N0} = {estimate.TotalBytes:N0} bytes ({estimate.TotalBytes / 1e9:F3} GB) vs bf16 {7_241_732_096L * 2 / 1e9:F2} GB");
        (estimate.TotalBytes / 1e9).Should().BeApproximately(4.13, 0.01);
        var single = QuantizedModelLoader.EstimateBytes(MistralConfig.Mistral7B, new QuantizedLoadOptions { Nf4 = new Nf4Options { DoubleQuant = false } });
        single.QuantizedBytes.Should().Be(packed + (scales * 4));
    }

    [Fact]
    public void SkippedModulesStayDenseAndHoldTheCheckpointWeights()
    {
        var options = new QuantizedLoadOptions { SkipModules = ["down_proj", "model.layers.1.self_attn"] };
        var result = QuantizedModelLoader.Load(TinyCheckpoints.Folder(), options);
        using var model = result.Model;
        using var reader = CheckpointReader.Open(TinyCheckpoints.Folder());
        var modules = ModuleTree.NamedModules(model).ToDictionary(m => m.Name, m => m.Module);
        string[] dense = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj", "model.layers.1.self_attn.q_proj",
            "model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.self_attn.o_proj", "lm_head"];
        foreach (var name in dense)
        {
            var linear = modules[name].Should().BeOfType<DenseLinear>().Subject;
            using var expected = reader.Load(name + ".weight", ScalarType.BFloat16);
            TensorChecks.Exactly(linear.Weight, expected).Should().BeTrue(name);
        }

        result.QuantizedLayers.Should().Be(14 - 6);
        modules["model.layers.0.self_attn.q_proj"].Should().BeOfType<Linear4bit>();
        QuantizedModelLoader.IsQuantizationTarget("model.layers.10.mlp.up_proj", ["model.layers.1"]).Should().BeTrue();
        QuantizedModelLoader.IsQuantizationTarget("model.layers.1.mlp.up_proj", ["model.layers.1"]).Should().BeFalse();
        QuantizedModelLoader.IsQuantizationTarget("lm_head", []).Should().BeFalse();
        QuantizedModelLoader.EstimateBytes(TinyCheckpoints.Config(), options).TotalBytes.Should().Be(result.TotalBytes);
    }

    [Fact]
    public void MismatchedCheckpointListsEveryProblemAtOnce()
    {
        string dir = TinyCheckpoints.CopyWithEdits(TinyCheckpoints.Folder(), t =>
        {
            t.Remove("model.layers.1.mlp.up_proj.weight", out var up);
            up!.Dispose();
            t.Remove("model.norm.weight", out var norm);
            norm!.Dispose();
            t["model.layers.0.self_attn.q_proj.weight"] = zeros(64, 32);
            t["model.layers.0.extra.weight"] = zeros(3);
        });
        try
        {
            var act = () => QuantizedModelLoader.Load(dir);
            var e = act.Should().Throw<CheckpointMismatchException>().Which;
            e.Missing.Should().Equal("model.layers.1.mlp.up_proj.weight", "model.norm.weight");
            e.Unexpected.Should().Equal("model.layers.0.extra.weight");
            e.MisShaped.Should().ContainSingle().Which.Should().Be("model.layers.0.self_attn.q_proj.weight: checkpoint [64, 32] vs model [64, 64]");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void APackedWeightWithoutQuantizationConfigIsRejectedNamingTheField()
    {
        string dir = TinyCheckpoints.CopyWithEdits(TinyCheckpoints.Folder(), t =>
        {
            t["model.layers.0.self_attn.k_proj.weight"] = zeros([16, 64], ScalarType.Byte);
        });
        try
        {
            var act = () => QuantizedModelLoader.Load(dir);
            act.Should().Throw<CheckpointMismatchException>()
                .Which.MisShaped.Should().ContainSingle().Which.Should().Contain("model.layers.0.self_attn.k_proj.weight").And.Contain("quantization_config");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TiedEmbeddingsAreRejectedNamingTheFieldAndAMissingLmHeadIsListed()
    {
        // Mistral.Core rejects tie_word_embeddings = true (Mistral keeps a separate lm_head): the 4-bit loader reports it
        // before reading any tensor, naming the file and the field.
        string dir = TinyCheckpoints.CopyWithEdits(
            TinyCheckpoints.Folder(),
            t =>
            {
                t.Remove("lm_head.weight", out var head);
                head!.Dispose();
            },
            json => json.Replace("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true", StringComparison.Ordinal));
        try
        {
            var tied = () => QuantizedModelLoader.Load(dir);
            tied.Should().Throw<InvalidDataException>().WithMessage("*config.json*'tie_word_embeddings' = true*");
            string untiedDir = TinyCheckpoints.CopyWithEdits(TinyCheckpoints.Folder(), t => t.Remove("lm_head.weight"));
            try
            {
                var untied = () => QuantizedModelLoader.Load(untiedDir);
                untied.Should().Throw<CheckpointMismatchException>().Which.Missing.Should().Equal("lm_head.weight");
            }
            finally
            {
                Directory.Delete(untiedDir, recursive: true);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void CancellationStopsTheLoad()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var act = () => QuantizedModelLoader.Load(TinyCheckpoints.Folder(), cancellationToken: cts.Token);
        act.Should().Throw<OperationCanceledException>();
    }

    [Fact]
    public void InvalidOptionsAreRejectedNamingTheOption()
    {
        var meta = () => new QuantizedLoadOptions { Device = META }.Validate();
        meta.Should().Throw<ArgumentException>().WithMessage("*QuantizedLoadOptions.Device*");
        var dtype = () => new QuantizedLoadOptions { DType = ScalarType.Int32 }.Validate();
        dtype.Should().Throw<ArgumentException>().WithMessage("*QuantizedLoadOptions.DType*");
        var skip = () => new QuantizedLoadOptions { SkipModules = [""] }.Validate();
        skip.Should().Throw<ArgumentException>().WithMessage("*QuantizedLoadOptions.SkipModules*");
        var block = () => new QuantizedLoadOptions { Nf4 = new Nf4Options { BlockSize = 48 } }.Validate();
        block.Should().Throw<ArgumentException>().WithMessage("*Nf4Options.BlockSize*");
    }

    private static long HeaderBytes()
    {
        using var f = File.OpenRead(Path.Combine(TinyCheckpoints.Folder(), "model.safetensors"));
        var b = new byte[8];
        f.ReadExactly(b);
        return 8 + BitConverter.ToInt64(b);
    }

    /// <summary>Disposes a model at the end of a using block.</summary>
    private sealed class Disposer(MistralForCausalLM model) : IDisposable
    {
        public MistralForCausalLM Model { get; } = model;

        public void Dispose() => Model.Dispose();
    }

    /// <summary>IProgress that reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(Action<CheckpointLoadProgress> report) : IProgress<CheckpointLoadProgress>
    {
        public void Report(CheckpointLoadProgress value) => report(value);
    }
}
