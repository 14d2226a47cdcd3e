using System.Text.Json;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

/// <summary>
/// Completion-only loss and LoRA gradients against the plain-PyTorch reference of
/// <c>tools/training/completion_loss_reference.py</c> (fixture <c>tests/fixtures/training/completion_loss.*</c>): the tiny
/// HF checkpoint <c>hf/gqa4_window</c> (sliding window 8), LoRA r 4 on all seven projections with fixed weights, 4
/// prompt/target pairs in 2 right-padded micro-batches of 14 and 5 target tokens, loss = Σ token losses / 19 (transformers
/// ≥ 4.46 with <c>num_items_in_batch</c>), gradients accumulated over both micro-batches. Expected values are float64.
/// </summary>
public sealed class CompletionLossReferenceTests(ITestOutputHelper output) : IDisposable
{
    private readonly JsonElement _json = JsonDocument.Parse(File.ReadAllText(TestPaths.FixturePath("training", "completion_loss.json"))).RootElement;
    private readonly SafeTensorsFile _reference = SafeTensorsFile.Open(TestPaths.FixturePath("training", "completion_loss.safetensors"));

    public void Dispose() => _reference.Dispose();

    private (MistralForCausalLM Model, LoraModel Lora) LoadModel()
    {
        string folder = TestPaths.FixturePath("hf", "gqa4_window");
        var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(folder, "config.json")), ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, folder);
        var lora = LoraInjector.Inject(model, new LoraOptions { R = 4, Alpha = 8, Dropout = 0, TargetModules = LoraOptions.AllProjections });
        using (no_grad())
        {
            foreach (var (key, p) in lora.NamedAdapterParameters())
            {
                using var w = _reference.Load("weight." + key);
                p.copy_(w);
            }
        }

        lora.NamedAdapterParameters().Should().HaveCount(28);
        return (model, lora);
    }

    private CompletionDataset Data()
    {
        var pairs = _json.GetProperty("pairs").EnumerateArray().Select(p => new TokenizedCompletion(
            p.GetProperty("prompt").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            p.GetProperty("target").EnumerateArray().Select(x => x.GetInt32()).ToArray())).ToList();
        return new SftCompletionBuilder().Build(pairs); // BOS 1, EOS 2, pad = EOS: the script's framing
    }

    [Fact]
    public void TheBuildersMicroBatchesAreTheReferencesPaddedBatches()
    {
        var data = Data();
        data.Describe().Should().Be("4 examples from 4 prompt/target pairs (49 tokens, 19 in the loss, longest 16); max length 512: 0 truncated (0 tokens cut), 0 dropped");
        foreach (var (indices, n) in new[] { (new[] { 0, 1 }, 0), (new[] { 2, 3 }, 1) })
        {
            var batch = data.CreateBatch(indices);
            using var ids = _reference.Load($"batch{n}.input_ids");
            using var mask = _reference.Load($"batch{n}.attention_mask");
            using var labels = _reference.Load($"batch{n}.labels");
            (batch.Rows, batch.Columns).Should().Be(((int)ids.shape[0], (int)ids.shape[1]));
            batch.InputIds.Should().Equal(ids.data<long>().ToArray());
            batch.AttentionMask.Should().Equal(mask.data<long>().ToArray());
            batch.Labels.Should().Equal(labels.data<long>().ToArray());
        }

        data.CreateBatch([0, 1]).TargetTokens.Should().Be(14);
        data.CreateBatch([2, 3]).TargetTokens.Should().Be(5);
    }

    [Fact]
    public void AccumulatedLossAndLoraGradientsEqualThePyTorchReference()
    {
        var (model, lora) = LoadModel();
        using var m = model;
        model.train();
        var data = Data();
        double expectedLoss = _json.GetProperty("loss").GetDouble();
        double meanOfMeans = _json.GetProperty("loss_mean_of_micro_batch_means").GetDouble();

        var step = TrainingLoop.AccumulateStep(model, data, [[0, 1], [2, 3]], CPU, CancellationToken.None);
        double loss = 0;
        for (int i = 0; i < step.Losses.Count; i++)
        {
            loss += step.Weights[i] * step.Losses[i].item<float>();
            step.Losses[i].Dispose();
        }

        step.Weights.Should().Equal(14.0 / 19, 5.0 / 19);
        step.TargetTokens.Should().Be(19);
        double relLoss = Math.Abs(loss - expectedLoss) / expectedLoss;
        double worst = 0;
        foreach (var (key, p) in lora.NamedAdapterParameters())
        {
            using var expected = _reference.Load("grad." + key);
            using var actual = p.grad!.to(ScalarType.Float64);
            double scale = expected.abs().max().item<double>();
            double diff = (actual - expected).abs().max().item<double>();
            scale.Should().BeGreaterThan(1e-4, $"{key} has a real gradient");
            worst = Math.Max(worst, diff / scale);
        }

        output.WriteLine($"loss {loss:R} vs reference {expectedLoss:R} (rel {relLoss:E2}); mean of micro-batch means would be {meanOfMeans:R}; " +
                         $"worst per-tensor max|Δgrad|/max|grad| {worst:E2}");
        relLoss.Should().BeLessThanOrEqualTo(1e-5);
        Math.Abs(meanOfMeans - expectedLoss).Should().BeGreaterThan(100 * 1e-5 * expectedLoss, "the fixture distinguishes the normalizations");
        worst.Should().BeLessThanOrEqualTo(1e-5);
    }

    [Fact]
    public void OneTrainerStepReportsTheReferenceLossAndPreClipNorm()
    {
        var (model, lora) = LoadModel();
        using var m = model;
        var result = new LoraTrainer().Train(model, lora, Data(), new LoraTrainingOptions
        {
            PerDeviceBatchSize = 2, GradientAccumulationSteps = 2, Shuffle = false, LearningRate = 1e-3,
        });
        var s = result.Steps.Should().ContainSingle().Subject;
        double expectedLoss = _json.GetProperty("loss").GetDouble();
        double expectedNorm = _json.GetProperty("grad_norm").GetDouble();
        output.WriteLine($"step loss {s.Loss:R} (reference {expectedLoss:R}), grad norm {s.GradNorm:R} (reference {expectedNorm:R})");
        (s.MicroBatches, s.Tokens, s.TargetTokens).Should().Be((2, 49L, 19L));
        s.Loss.Should().BeApproximately(expectedLoss, 1e-5 * expectedLoss);
        s.GradNorm.Should().BeApproximately(expectedNorm, 1e-5 * expectedNorm);
    }
}
