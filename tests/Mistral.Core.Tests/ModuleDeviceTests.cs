using System.Reflection;
using FluentAssertions;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

/// <summary>
/// Every module of a model records the device it is built on as the device TorchSharp's <c>Module.to</c> compares against
/// (by default TorchSharp assumes the CPU, so <c>.to(CPU)</c> of a model built on a GPU would move nothing). Checked on
/// the meta device, which this machine has; the GPU lane moves a CUDA-built model to the CPU and compares its logits.
/// </summary>
public class ModuleDeviceTests
{
    private static readonly FieldInfo DeviceTypeField = typeof(nn.Module).GetField("_deviceType", BindingFlags.NonPublic | BindingFlags.Instance)!;

    [Fact]
    public void EveryModuleOfAModelBuiltOnADeviceRecordsThatDevice()
    {
        var config = new MistralConfig
        {
            VocabSize = 64, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4,
            NumKeyValueHeads = 2, HeadDim = 8, MaxPositionEmbeddings = 128,
        };
        using var model = new MistralForCausalLM(config, ScalarType.Float32, META);
        var modules = model.named_modules().Select(m => (m.name, m.module)).Prepend(("(root)", (nn.Module)model)).ToList();
        modules.Should().HaveCountGreaterThan(10);
        foreach (var (name, module) in modules)
        {
            DeviceTypeField.GetValue(module).Should().Be(DeviceType.META, "module '{0}' ({1}) was built on the meta device", name, module.GetType().Name);
        }

        using var onCpu = new RmsNorm(8, 1e-5, ScalarType.Float32, CPU);
        DeviceTypeField.GetValue(onCpu).Should().Be(DeviceType.CPU);
        using var wrapped = new TokenEmbedding(empty([4, 8], ScalarType.Float32, META));
        DeviceTypeField.GetValue(wrapped).Should().Be(DeviceType.META, "a wrapped table's device is the table's");
    }
}
