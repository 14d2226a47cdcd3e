using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>Walks and edits a module tree by Hugging Face state-dict names (<c>model.layers.0.self_attn.q_proj</c>).</summary>
public static class ModuleTree
{
    /// <summary>Finds a module by dotted name; the empty name is the root.</summary>
    /// <exception cref="ArgumentException">No module has that name; the message names the missing segment.</exception>
    public static nn.Module Get(nn.Module root, string path)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(path);
        nn.Module current = root;
        if (path.Length == 0)
        {
            return current;
        }

        string walked = string.Empty;
        foreach (string segment in path.Split('.'))
        {
            nn.Module? next = null;
            foreach ((string name, nn.Module child) in current.named_children())
            {
                if (name == segment)
                {
                    next = child;
                    break;
                }
            }

            walked = walked.Length == 0 ? segment : walked + "." + segment;
            current = next ?? throw new ArgumentException($"No module named '{walked}' (while looking for '{path}').", nameof(path));
        }

        return current;
    }

    /// <summary>Every module with its dotted name, depth first, the root first (name "").</summary>
    public static IEnumerable<(string Name, nn.Module Module)> NamedModules(nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        yield return (string.Empty, root);
        foreach ((string name, nn.Module child) in root.named_children())
        {
            foreach ((string sub, nn.Module m) in NamedModules(child))
            {
                yield return (sub.Length == 0 ? name : name + "." + sub, m);
            }
        }
    }

    /// <summary>Replaces the module at <paramref name="path"/> (e.g. <c>model.layers.3.mlp.down_proj</c>) and returns the old one.</summary>
    /// <remarks>The parent must implement <see cref="IReplaceableChildren"/> (every block of Mistral.Core does).</remarks>
    public static nn.Module Replace(nn.Module root, string path, nn.Module replacement)
    {
        ArgumentNullException.ThrowIfNull(replacement);
        int dot = path.LastIndexOf('.');
        string parentPath = dot < 0 ? string.Empty : path[..dot];
        string childName = dot < 0 ? path : path[(dot + 1)..];
        nn.Module parent = Get(root, parentPath);
        nn.Module old = Get(root, path);
        if (parent is not IReplaceableChildren replaceable)
        {
            throw new InvalidOperationException($"Module '{parentPath}' ({parent.GetType().Name}) does not allow its children to be replaced.");
        }

        replaceable.ReplaceChild(childName, replacement);
        return old;
    }

    /// <summary>
    /// Helper for <see cref="IReplaceableChildren"/> implementations: sets the field whose state-dict name is
    /// <paramref name="name"/> and re-registers the child under that name, keeping the registration order.
    /// </summary>
    public static void ReplaceField(nn.Module owner, string name, nn.Module replacement)
    {
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentNullException.ThrowIfNull(replacement);
        FieldInfo? field = null;
        for (Type? t = owner.GetType(); t is not null && field is null; t = t.BaseType)
        {
            field = t.GetFields(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public | BindingFlags.DeclaredOnly)
                .FirstOrDefault(f => f.ComponentName() == name && typeof(nn.Module).IsAssignableFrom(f.FieldType));
        }

        if (field is null)
        {
            throw new ArgumentException($"{owner.GetType().Name} has no child module named '{name}'.", nameof(name));
        }

        if (!field.FieldType.IsInstanceOfType(replacement))
        {
            throw new ArgumentException(
                $"Child '{name}' of {owner.GetType().Name} must be a {field.FieldType.Name}; got {replacement.GetType().Name}.",
                nameof(replacement));
        }

        field.SetValue(owner, replacement);
        var children = owner.named_children().ToList();
        var registry = (OrderedDict<string, nn.Module>)SubmoduleField.Value.GetValue(owner)!;
        registry.clear();
        foreach ((string childName, nn.Module child) in children)
        {
            registry.Add(childName, childName == name ? replacement : child);
        }
    }

    // TorchSharp keeps a module's children in this protected field; only replacing a child needs it, so a TorchSharp
    // that renamed it breaks Replace with a clear message, not every ModuleTree call.
    private static readonly Lazy<FieldInfo> SubmoduleField = new(() =>
        typeof(nn.Module).GetField("_internal_submodules", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new MissingFieldException("TorchSharp's Module no longer has the '_internal_submodules' field ModuleTree.Replace needs; this TorchSharp version is not supported."));
}
