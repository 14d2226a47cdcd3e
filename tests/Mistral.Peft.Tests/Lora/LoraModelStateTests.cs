using Microsoft.Extensions.Logging;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

/// <summary>Disable scopes restore each layer's own state; merges can be cancelled between layers.</summary>
public class LoraModelStateTests
{
    private static LoraOptions Options() => new() { TargetModules = ["q_proj", "v_proj"], R = 4, Alpha = 8, Init = LoraInit.LinearDefault, Seed = 4 };

    [Fact]
    public void NestedDisableScopesRestoreThePreviousStateOfEachLayer()
    {
        using var model = TinyModels.RandomModel();
        using var ids = TinyModels.Ids();
        using var baseLogits = TinyModels.Logits(model, ids);
        var lora = LoraInjector.Inject(model, Options());
        using var adapted = TinyModels.Logits(model, ids);

        using (lora.AdaptersDisabled())
        {
            using (lora.AdaptersDisabled())
            {
                lora.AdaptersEnabled.Should().BeFalse();
            }

            // The inner scope found the adapters off, so it leaves them off.
            lora.AdaptersEnabled.Should().BeFalse();
            using var stillDisabled = TinyModels.Logits(model, ids);
            TensorChecks.Exactly(stillDisabled, baseLogits).Should().BeTrue();
        }

        lora.AdaptersEnabled.Should().BeTrue();
        lora.Layers.Values.Should().OnlyContain(l => l.AdapterEnabled);
        using var back = TinyModels.Logits(model, ids);
        TensorChecks.Exactly(back, adapted).Should().BeTrue();
    }

    [Fact]
    public void AScopeDoesNotEnableALayerThatWasOffBeforeAndDisposingTwiceChangesNothing()
    {
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, Options());
        lora.Layers["model.layers.1.self_attn.v_proj"].AdapterEnabled = false;
        var scope = lora.AdaptersDisabled();
        lora.Layers.Values.Should().OnlyContain(l => !l.AdapterEnabled);
        scope.Dispose();
        lora.Layers.Where(kv => !kv.Value.AdapterEnabled).Select(kv => kv.Key).Should().Equal("model.layers.1.self_attn.v_proj");

        lora.DisableAdapters();
        scope.Dispose();
        lora.Layers.Values.Should().OnlyContain(l => !l.AdapterEnabled, "a scope restores once");

        lora.DisableAdapters();
        using (lora.AdaptersDisabled())
        {
        }

        lora.AdaptersEnabled.Should().BeFalse("the adapters were all off when the scope opened");
    }

    /// <summary>Cancels its token when the first lossy 4-bit merge warning is logged, i.e. during the first layer.</summary>
    private sealed class CancelOnFirstMerge(CancellationTokenSource cts) : ILogger
    {
        public int Merges { get; private set; }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (formatter(state, exception).StartsWith("Merging", StringComparison.Ordinal))
            {
                Merges++;
                cts.Cancel();
            }
        }
    }

    [Fact]
    public void MergeStopsBetweenLayersWhenCancelledAndCanBeResumed()
    {
        using var model = TinyModels.RandomModel();
        LoraTestModels.QuantizeProjections(model);
        using var cts = new CancellationTokenSource();
        var logger = new CancelOnFirstMerge(cts);
        var lora = LoraInjector.Inject(model, Options(), logger);

        FluentActions.Invoking(() => lora.Merge(cts.Token)).Should().Throw<OperationCanceledException>();
        logger.Merges.Should().Be(1);
        lora.Layers.Values.Count(l => l.Merged).Should().Be(1);
        lora.Layers.First().Value.Merged.Should().BeTrue("layers are merged in name order");
        lora.IsMerged.Should().BeFalse();

        lora.Merge();
        lora.IsMerged.Should().BeTrue();
        logger.Merges.Should().Be(lora.Layers.Count, "the resumed merge skips the layer already merged");
    }

    [Fact]
    public void ACancelledMergeAndUnloadLeavesEveryLoraWrapperInPlace()
    {
        using var model = TinyModels.RandomModel();
        LoraTestModels.QuantizeProjections(model);
        using var cts = new CancellationTokenSource();
        var lora = LoraInjector.Inject(model, Options(), new CancelOnFirstMerge(cts));

        FluentActions.Invoking(() => lora.MergeAndUnload(cts.Token)).Should().Throw<OperationCanceledException>();
        ModuleTree.NamedModules(model).Count(m => m.Module is LoraLinear).Should().Be(4);

        using var preCancelled = new CancellationTokenSource();
        preCancelled.Cancel();
        FluentActions.Invoking(() => lora.MergeAndUnload(preCancelled.Token)).Should().Throw<OperationCanceledException>();
        lora.Layers.Values.Count(l => l.Merged).Should().Be(1);

        lora.MergeAndUnload().Should().BeSameAs(model);
        ModuleTree.NamedModules(model).Should().NotContain(m => m.Module is LoraLinear);
        ModuleTree.NamedModules(model).Count(m => m.Module is Linear4bit).Should().Be(14);
    }
}
