namespace Mistral.Peft.IO;

/// <summary>
/// Writes a set of files into a folder as one unit (an adapter's config and weights, a checkpoint's config and tensors).
/// The files are first written completely into a private staging folder next to the target
/// (<c>.{name}.{id}.tmp</c>, on the same volume so that moves are renames); <see cref="Commit"/> then swaps the whole
/// folder with directory renames, so that the target always holds either its complete previous set or the complete new
/// one:
/// <list type="number">
/// <item>Files of an existing target that are not part of the new set (a README, a tokenizer, subfolders) are copied
/// into the staging folder, so they are kept.</item>
/// <item>The staging folder is renamed <c>.{name}.{id}.new</c>: from here on it is known complete.</item>
/// <item>The existing target is renamed <c>.{name}.{id}.old</c>.</item>
/// <item>The <c>.new</c> folder is renamed to the target.</item>
/// <item>The <c>.old</c> folder is deleted.</item>
/// </list>
/// A process killed between two of these steps leaves the hidden folders behind; <see cref="Recover"/> (run by every
/// save into the folder, and by the loaders) finishes the swap when the target is missing (the complete <c>.new</c>
/// folder, else the <c>.old</c> one, becomes the target) and deletes the rest, orphaned staging folders included.
/// One writer per folder at a time is assumed. Disposing deletes the staging folder if the commit did not happen.
/// </summary>
internal sealed class StagedFolder : IDisposable
{
    private const string StagingSuffix = ".tmp";
    private const string CompleteSuffix = ".new";
    private const string AsideSuffix = ".old";

    private readonly string _target;
    private readonly string _staging;
    private readonly string _complete;
    private readonly string _aside;

    private StagedFolder(string target, string id)
    {
        _target = target;
        string parent = Path.GetDirectoryName(target)!;
        string prefix = Path.Combine(parent, $".{Path.GetFileName(target)}.{id}");
        _staging = prefix + StagingSuffix;
        _complete = prefix + CompleteSuffix;
        _aside = prefix + AsideSuffix;
    }

    /// <summary>The steps of <see cref="Commit"/>, in order, as told to its step hook before each one.</summary>
    internal enum CommitStep
    {
        /// <summary>Copy the target's other files into the staging folder.</summary>
        CopyKeptFiles,

        /// <summary>Rename the staging folder <c>.new</c> (complete).</summary>
        Seal,

        /// <summary>Rename the previous target <c>.old</c> (skipped when there is none).</summary>
        MovePreviousAside,

        /// <summary>Rename the <c>.new</c> folder to the target.</summary>
        Swap,

        /// <summary>Delete the <c>.old</c> folder (skipped when there is none).</summary>
        DeletePrevious,
    }

    /// <summary>The folder the files end up in (full path).</summary>
    public string Target => _target;

    /// <summary>Where the files are staged before <see cref="Commit"/>.</summary>
    public string StagingPath => _staging;

    /// <summary>
    /// Recovers <paramref name="folder"/> from an interrupted <see cref="Commit"/> (see the class remarks), then creates the
    /// staging folder for it (and the parent of <paramref name="folder"/> if needed).
    /// </summary>
    /// <param name="folder">The destination folder; it need not exist.</param>
    /// <returns>The staged folder; dispose it.</returns>
    /// <exception cref="IOException"><paramref name="folder"/> is a file, or an interrupted save could not be recovered (the folder is named).</exception>
    public static StagedFolder Create(string folder)
    {
        string target = FullTarget(folder);
        if (File.Exists(target))
        {
            throw new IOException($"'{target}' is a file, not a folder.");
        }

        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        Recover(target);
        var staged = new StagedFolder(target, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(staged._staging);
        return staged;
    }

    /// <summary>
    /// Finishes or undoes a save into <paramref name="folder"/> that a killed process left half done: when the folder is
    /// missing, its complete new version (<c>.{name}.{id}.new</c>), else its previous one (<c>.{name}.{id}.old</c>),
    /// becomes the folder; every other hidden staging folder of it is deleted. Does nothing (and writes nothing) when
    /// there is nothing to recover.
    /// </summary>
    /// <param name="folder">The folder.</param>
    /// <returns>True when an interrupted save was found (and recovered or cleaned).</returns>
    /// <exception cref="IOException">The folder could not be restored (the folder and the hidden folder are named).</exception>
    public static bool Recover(string folder)
    {
        string target = FullTarget(folder);
        string parent = Path.GetDirectoryName(target)!;
        if (!Directory.Exists(parent))
        {
            return false;
        }

        string pattern = $".{Path.GetFileName(target)}.*";
        var leftovers = Directory.GetDirectories(parent, pattern)
            .Where(d => IsOurs(Path.GetFileName(d), Path.GetFileName(target)))
            .ToList();
        if (leftovers.Count == 0)
        {
            return false;
        }

        if (!Directory.Exists(target) && !File.Exists(target))
        {
            string? restore = Newest(leftovers, CompleteSuffix) ?? Newest(leftovers, AsideSuffix);
            if (restore is not null)
            {
                try
                {
                    Directory.Move(restore, target);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new IOException($"'{target}' is missing after an interrupted save, and moving '{restore}' back into its place failed: {e.Message}", e);
                }

                leftovers.Remove(restore);
            }
        }

        foreach (string leftover in leftovers)
        {
            TryDelete(leftover);
        }

        return true;
    }

    /// <summary>Where to write <paramref name="fileName"/> before <see cref="Commit"/>.</summary>
    /// <param name="fileName">A plain file name.</param>
    /// <returns>The path inside the staging folder.</returns>
    public string PathFor(string fileName) => Path.Combine(_staging, fileName);

    /// <summary>Swaps the staged files into the target folder as one unit (see the class remarks).</summary>
    /// <param name="fileNames">The staged files that make up the unit; the target's other files are kept.</param>
    /// <param name="beforeStep">
    /// Told before each step (tests throw there: an <see cref="IOException"/> as the step's failure, another exception as
    /// the process killed at that point); null for none.
    /// </param>
    /// <exception cref="FileNotFoundException">A file was not staged.</exception>
    /// <exception cref="IOException">A step failed; the target keeps its previous files (the message says when restoring them failed too).</exception>
    public void Commit(IReadOnlyList<string> fileNames, Action<CommitStep>? beforeStep = null)
    {
        ArgumentNullException.ThrowIfNull(fileNames);
        foreach (string name in fileNames)
        {
            if (!File.Exists(PathFor(name)))
            {
                throw new FileNotFoundException($"'{name}' was not written to the staging folder '{_staging}'.", PathFor(name));
            }
        }

        bool hadTarget = Directory.Exists(_target);
        try
        {
            beforeStep?.Invoke(CommitStep.CopyKeptFiles);
            if (hadTarget)
            {
                CopyKept(_target, _staging, new HashSet<string>(fileNames, StringComparer.Ordinal));
            }

            beforeStep?.Invoke(CommitStep.Seal);
            Directory.Move(_staging, _complete);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Writing into '{_target}' failed; its previous files are unchanged: {e.Message}", e);
        }

        if (hadTarget)
        {
            try
            {
                beforeStep?.Invoke(CommitStep.MovePreviousAside);
                Directory.Move(_target, _aside);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                TryDelete(_complete);
                throw new IOException($"Writing into '{_target}' failed; its previous files are unchanged: {e.Message}", e);
            }
        }

        try
        {
            beforeStep?.Invoke(CommitStep.Swap);
            Directory.Move(_complete, _target);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!hadTarget)
            {
                TryDelete(_complete);
                throw new IOException($"Writing into '{_target}' failed: {e.Message}", e);
            }

            try
            {
                Directory.Move(_aside, _target);
            }
            catch (Exception restoreError) when (restoreError is IOException or UnauthorizedAccessException)
            {
                throw new IOException(
                    $"Writing into '{_target}' failed ({e.Message}), and moving its previous version back from '{_aside}' failed too ({restoreError.Message}); the next save or load of the folder restores it.",
                    new AggregateException(e, restoreError));
            }

            TryDelete(_complete);
            throw new IOException($"Writing into '{_target}' failed; its previous files are unchanged: {e.Message}", e);
        }

        if (hadTarget)
        {
            beforeStep?.Invoke(CommitStep.DeletePrevious);
            TryDelete(_aside);
        }
    }

    /// <summary>Deletes the staging folder if it is still there.</summary>
    public void Dispose() => TryDelete(_staging);

    private static string FullTarget(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        if (Path.GetDirectoryName(target) is null)
        {
            throw new ArgumentException($"'{folder}' is a root folder; files are staged next to the destination, so it needs a parent.", nameof(folder));
        }

        return target;
    }

    // ".{name}.{32 hex}.tmp|new|old" for this target name (not a sibling whose name merely starts the same).
    private static bool IsOurs(string leftover, string name)
    {
        string prefix = "." + name + ".";
        if (!leftover.StartsWith(prefix, StringComparison.Ordinal) || leftover.Length != prefix.Length + 32 + 4)
        {
            return false;
        }

        string suffix = leftover[^4..];
        return (suffix is StagingSuffix or CompleteSuffix or AsideSuffix)
            && leftover.AsSpan(prefix.Length, 32).ToString().All(Uri.IsHexDigit);
    }

    private static string? Newest(List<string> folders, string suffix) =>
        folders.Where(f => f.EndsWith(suffix, StringComparison.Ordinal)).OrderByDescending(Directory.GetLastWriteTimeUtc).FirstOrDefault();

    // Copies what the new set does not replace (files and folders, recursively) from the current target into the staging folder.
    private static void CopyKept(string from, string to, HashSet<string> replaced)
    {
        foreach (string file in Directory.GetFiles(from))
        {
            string name = Path.GetFileName(file);
            if (!replaced.Contains(name))
            {
                File.Copy(file, Path.Combine(to, name));
            }
        }

        foreach (string dir in Directory.GetDirectories(from))
        {
            string name = Path.GetFileName(dir);
            if (!replaced.Contains(name))
            {
                string copy = Path.Combine(to, name);
                Directory.CreateDirectory(copy);
                CopyKept(dir, copy, []);
            }
        }
    }

    private static void TryDelete(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: a hidden folder that cannot be removed is never read, and the next save or load retries.
        }
    }
}
