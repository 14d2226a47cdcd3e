using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Puts a module tree in eval mode and, when disposed, gives every module (not just the root) the training/eval mode it
/// had before: a caller's mixed tree (e.g. one layer frozen in eval mode inside a model in training mode) comes back as
/// it was.
/// </summary>
internal sealed class ModuleModeScope : IDisposable
{
    // Root first, then depth first: a module always comes after its parent.
    private readonly List<(nn.Module Module, bool Training)> modes;
    private bool disposed;

    private ModuleModeScope(List<(nn.Module Module, bool Training)> modes) => this.modes = modes;

    /// <summary>Records the mode of every module under <paramref name="root"/> and switches the whole tree to eval mode.</summary>
    /// <param name="root">The module tree.</param>
    /// <returns>The scope that restores the recorded modes.</returns>
    public static ModuleModeScope Eval(nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var modes = ModuleTree.NamedModules(root).Select(m => (m.Module, m.Module.training)).ToList();
        root.eval();
        return new ModuleModeScope(modes);
    }

    /// <summary>Restores the recorded modes.</summary>
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;

        // train(mode) is recursive, so restoring parents before children leaves each module with its own recorded mode.
        foreach (var (module, training) in modes)
        {
            if (module.training != training)
            {
                module.train(training);
            }
        }
    }
}
