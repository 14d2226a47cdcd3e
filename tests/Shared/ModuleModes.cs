using Mistral.Core.Modeling;
using TorchSharp;

namespace Mistral.Tests.Shared;

/// <summary>The training flag of every module of a tree, by dotted name (the root is "").</summary>
internal static class ModuleModes
{
    /// <summary>name → <c>training</c> for every module, the root included.</summary>
    public static Dictionary<string, bool> Of(torch.nn.Module root) =>
        ModuleTree.NamedModules(root).ToDictionary(m => m.Name, m => m.Module.training, StringComparer.Ordinal);

    /// <summary>The names of the modules in training mode (empty when the whole tree is in eval mode).</summary>
    public static List<string> Training(torch.nn.Module root) =>
        ModuleTree.NamedModules(root).Where(m => m.Module.training).Select(m => m.Name.Length == 0 ? "(root)" : m.Name).ToList();
}
