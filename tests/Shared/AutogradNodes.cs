using System.Reflection;
using TorchSharp;

namespace Mistral.Tests.Shared;

/// <summary>TorchSharp's custom autograd nodes, for tests that check a graph's nodes (and their saved tensors) are freed.</summary>
internal static class AutogradNodes
{
    /// <summary>
    /// TorchSharp's count of custom autograd nodes whose native node still exists (a node leaves the list when libtorch
    /// deletes it, which also releases its saved tensors). Read by reflection: test-only.
    /// </summary>
    public static int Alive()
    {
        const BindingFlags Flags = BindingFlags.NonPublic | BindingFlags.Static;
        Type node = typeof(torch.autograd).GetNestedType("Node", BindingFlags.NonPublic)
            ?? throw new InvalidOperationException("TorchSharp's torch.autograd.Node type was not found (TorchSharp changed).");
        var list = (System.Collections.IList)(node.GetField("AliveNodes", Flags)?.GetValue(null)
            ?? throw new InvalidOperationException("TorchSharp's Node.AliveNodes list was not found (TorchSharp changed)."));
        lock (list)
        {
            return list.Count;
        }
    }
}
