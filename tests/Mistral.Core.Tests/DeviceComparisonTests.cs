using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

public class DeviceComparisonTests
{
    [Fact]
    public void TensorDevicesCompareByValueNotReference()
    {
        using var a = ones(2);
        using var b = zeros(3);
        (a.device != a.device).Should().BeTrue("TorchSharp builds a new Device per call and has no value equality — the trap");
        a.device.IsSameDevice(b.device).Should().BeTrue();
        a.device.IsSameDevice(new Device(DeviceType.META)).Should().BeFalse();
    }
}
