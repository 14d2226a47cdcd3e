using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Device equality. TorchSharp's <see cref="Device"/> has no value equality and <c>Tensor.device</c> builds a new instance
/// on every call, so <c>==</c> / <c>!=</c> compare references and are always "different".
/// </summary>
internal static class DeviceComparison
{
    /// <summary>Same device type and index.</summary>
    internal static bool IsSameDevice(this Device a, Device b) => a.type == b.type && a.index == b.index;
}
