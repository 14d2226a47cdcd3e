using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Training;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Training;

/// <summary>A tiny random model with seeded LoRA adapters (no dropout, so runs are deterministic), and data for it.</summary>
internal sealed class TrainingFixture : IDisposable
{
    public TrainingFixture(long seed = 1, bool allLinear = false, ScalarType dtype = ScalarType.Float32)
    {
        Model = TinyModels.RandomModel(seed: seed, dtype: dtype);
        Lora = LoraInjector.Inject(Model, new LoraOptions
        {
            R = 4,
            Alpha = 8,
            Init = LoraInit.LinearDefault,
            Seed = 11,
            TargetModules = allLinear ? [LoraOptions.AllLinear] : ["q_proj", "v_proj"],
        });
    }

    public MistralForCausalLM Model { get; }

    public LoraModel Lora { get; }

    /// <summary>Copies of the adapter weights, in <see cref="LoraModel.AdapterParameters"/> order.</summary>
    public List<float[]> Weights() => Lora.AdapterParameters().Select(p => p.detach().cpu().data<float>().ToArray()).ToList();

    /// <summary><paramref name="count"/> blocks of random ids in [3, 97) from a private generator.</summary>
    public static PackedDataset RandomBlocks(int count, int length = 12, long seed = 5)
    {
        using var gen = new Generator((ulong)seed);
        using var ids = randint(3, 97, [count, length], ScalarType.Int32, generator: gen);
        int[] flat = ids.data<int>().ToArray();
        return new PackedDataset(Enumerable.Range(0, count).Select(i => (IReadOnlyList<int>)flat[(i * length)..((i + 1) * length)]), length, count);
    }

    /// <summary>
    /// Options for a short LoRA run over <see cref="RandomBlocks"/>(12): batch 2 × accumulation 2, so 3 steps per epoch and
    /// 6 in all, with a cosine schedule after 2 warmup steps, weight decay, seed 9 and every step reported. Tests add
    /// what they exercise with <c>with</c>.
    /// </summary>
    public static LoraTrainingOptions SixStepOptions() => new()
    {
        Epochs = 2,
        PerDeviceBatchSize = 2,
        GradientAccumulationSteps = 2,
        LearningRate = 3e-2,
        Schedule = LearningRateSchedule.Cosine,
        WarmupSteps = 2,
        WeightDecay = 0.01,
        Seed = 9,
        ReportEverySteps = 1,
    };

    public static double MaxAbsDiff(List<float[]> a, List<float[]> b) =>
        a.Zip(b).SelectMany(p => p.First.Zip(p.Second, (x, y) => Math.Abs((double)x - y))).Max();

    public void Dispose() => Model.Dispose();
}
