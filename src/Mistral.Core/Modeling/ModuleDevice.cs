using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// The device a module is built on, in the form TorchSharp's <c>nn.Module</c> keeps as the device it was last moved to
/// (its protected <c>_deviceType</c> and <c>_deviceIndex</c>). TorchSharp starts that at the CPU and <c>Module.to</c>
/// moves nothing when asked for the device it believes the module is on, so a module built on a GPU and never moved would
/// ignore <c>.to(CPU)</c>. Every module of this library records the device it is built on.
/// </summary>
internal static class ModuleDevice
{
    /// <summary>The (type, index) pair for a module built on <paramref name="device"/>.</summary>
    public static (DeviceType Type, int Index) Origin(Device device) =>
        (device.type, device.type == DeviceType.CUDA ? device.index : -1);
}
