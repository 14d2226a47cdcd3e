using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.QuantizedModel;

/// <summary>
/// Every tensor handle the 4-bit paths create is disposed: TorchSharp's per-thread statistics
/// (<c>DisposeScopeManager.Statistics.ThreadTotalLiveCount</c> = created − disposed on this thread) must come back to
/// where they started. A handle left to the finalizer is disposed on the finalizer thread, so it still shows here.
/// </summary>
public sealed class TensorHandleLeakTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static long Live => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    private void SaveQuantizedTinyCheckpoint()
    {
        using var model = QuantizedModelLoader.Load(TinyCheckpoints.Folder()).Model;
        QuantizedCheckpoint.Save(model, _dir);
    }

    [Fact]
    public void LoadPrequantizedAndDisposingTheModelLeavesNoHandle()
    {
        SaveQuantizedTinyCheckpoint();
        // Once untimed so lazily created process-wide state is not counted.
        QuantizedModelLoader.LoadPrequantized(_dir).Model.Dispose();
        long before = Live;
        QuantizedModelLoader.LoadPrequantized(_dir).Model.Dispose();
        Live.Should().Be(before);
    }

    [Fact]
    public void FromBitsAndBytesStateLeavesNoHandleWithOrWithoutACopy()
    {
        using var layer = Linear4bit.FromLinear(randn(32, 64, generator: new Generator(3)));
        var state = layer.ToBitsAndBytesState("p");
        try
        {
            long before = Live;
            Nf4Tensor.FromBitsAndBytesState(state, "p").Dispose();
            Live.Should().Be(before, "the copying public path");
            Nf4Tensor.FromBitsAndBytesState(state, "p", copy: false).Dispose();
            Live.Should().Be(before, "the view path");
            Linear4bit.AdoptNf4(Nf4Tensor.FromBitsAndBytesState(state, "p", copy: false), null, ScalarType.BFloat16).Dispose();
            Live.Should().Be(before, "a layer adopting the tensors frees them when disposed");
        }
        finally
        {
            foreach (var t in state.Values)
            {
                t.Dispose();
            }
        }
    }

    [Fact]
    public void ToBitsAndBytesStateAndQuantizedCheckpointSaveLeaveNoHandle()
    {
        using var layer = Linear4bit.FromLinear(randn(32, 64, generator: new Generator(3)), randn(32, generator: new Generator(4)));
        // The first call makes the layer's cached codebook (module state, freed with the layer).
        DisposeAll(layer.ToBitsAndBytesState("p"));
        long before = Live;
        DisposeAll(layer.ToBitsAndBytesState("p"));
        Live.Should().Be(before);

        using var model = QuantizedModelLoader.Load(TinyCheckpoints.Folder()).Model;
        QuantizedCheckpoint.Save(model, _dir);
        long afterFirst = Live;
        QuantizedCheckpoint.Save(model, _dir);
        Live.Should().Be(afterFirst);
    }

    [Fact]
    public void AdoptedWeightsAreNotCopied()
    {
        using var layer = Linear4bit.FromLinear(randn(32, 64, generator: new Generator(3)));
        var state = layer.ToBitsAndBytesState("p");
        try
        {
            var nf4 = Nf4Tensor.FromBitsAndBytesState(state, "p", copy: false);
            using var adopted = Linear4bit.AdoptNf4(nf4, null, ScalarType.BFloat16);
            nf4.Dispose(); // no longer owns anything: the layer's buffers stay valid
            // The buffer shares the state tensor's storage: writing one shows in the other.
            state["p.weight"].fill_(0x5A);
            var weight = adopted.named_buffers().Single(b => b.name == "weight").buffer;
            weight.eq(0x5A).all().item<bool>().Should().BeTrue();
            weight.shape.Should().Equal([32L * 64 / 2, 1L]);
        }
        finally
        {
            foreach (var t in state.Values)
            {
                t.Dispose();
            }
        }
    }

    private static void DisposeAll(IReadOnlyDictionary<string, Tensor> state)
    {
        foreach (var t in state.Values)
        {
            t.Dispose();
        }
    }
}
