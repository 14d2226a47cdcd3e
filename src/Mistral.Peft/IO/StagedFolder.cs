namespace Mistral.Peft.IO;

/// <summary>
/// Writes a set of files into a folder as one unit (an adapter's config and weights, a checkpoint's config and tensors).
/// The files are first written completely into a private staging folder next to the target
/// (<c>.{name}.{guid}.tmp</c>, on the same volume so that moves are renames); <see cref="Commit"/> then puts them in place:
/// <list type="bullet">
/// <item>When the target folder does not exist, the staging folder is renamed to it: one atomic step.</item>
/// <item>When it exists (it may hold other files, which are kept), the files move one by one in the order given, each
/// with an atomic replace that keeps the previous file as a backup in the staging folder. If a move fails, the files
/// already moved are put back from their backups (or removed when they are new), so the folder keeps its previous set.
/// Callers pass the large tensor file first: it is the file a reader may hold open, so the replace most likely to fail
/// runs while nothing has changed yet; the small config goes last and completes the unit.</item>
/// </list>
/// Disposing deletes the staging folder (with any backups) whatever happened, so no partial folder is left behind.
/// </summary>
internal sealed class StagedFolder : IDisposable
{
    private readonly string _target;
    private readonly string _staging;

    private StagedFolder(string target, string staging)
    {
        _target = target;
        _staging = staging;
    }

    /// <summary>The folder the files end up in (full path).</summary>
    public string Target => _target;

    /// <summary>Creates the staging folder for <paramref name="folder"/> (and the parent of <paramref name="folder"/> if needed).</summary>
    /// <param name="folder">The destination folder; it need not exist.</param>
    /// <returns>The staged folder; dispose it.</returns>
    public static StagedFolder Create(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        string parent = Path.GetDirectoryName(target)
            ?? throw new ArgumentException($"'{folder}' is a root folder; files are staged next to the destination, so it needs a parent.", nameof(folder));
        if (File.Exists(target))
        {
            throw new IOException($"'{target}' is a file, not a folder.");
        }

        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(staging);
        return new StagedFolder(target, staging);
    }

    /// <summary>Where to write <paramref name="fileName"/> before <see cref="Commit"/>.</summary>
    /// <param name="fileName">A plain file name.</param>
    /// <returns>The path inside the staging folder.</returns>
    public string PathFor(string fileName) => Path.Combine(_staging, fileName);

    /// <summary>Moves the staged files into the target folder as one unit (see the class remarks).</summary>
    /// <param name="fileNames">The staged files, in the order to move them when the target exists.</param>
    /// <exception cref="FileNotFoundException">A file was not staged.</exception>
    /// <exception cref="IOException">A move failed; the target keeps its previous files (the message says when restoring them failed too).</exception>
    public void Commit(IReadOnlyList<string> fileNames)
    {
        ArgumentNullException.ThrowIfNull(fileNames);
        foreach (string name in fileNames)
        {
            if (!File.Exists(PathFor(name)))
            {
                throw new FileNotFoundException($"'{name}' was not written to the staging folder '{_staging}'.", PathFor(name));
            }
        }

        if (!Directory.Exists(_target))
        {
            try
            {
                Directory.Move(_staging, _target);
                return;
            }
            catch (IOException) when (Directory.Exists(_target) && Directory.Exists(_staging))
            {
                // Someone created the target meanwhile: move file by file below.
            }
        }

        var moved = new List<(string Destination, string? Backup)>();
        try
        {
            foreach (string name in fileNames)
            {
                string source = PathFor(name);
                string destination = Path.Combine(_target, name);
                if (File.Exists(destination))
                {
                    string backup = PathFor(name + ".previous");
                    File.Replace(source, destination, backup);
                    moved.Add((destination, backup));
                }
                else
                {
                    File.Move(source, destination);
                    moved.Add((destination, null));
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var failures = Restore(moved);
            if (failures.Count > 0)
            {
                throw new IOException(
                    $"Writing into '{_target}' failed ({e.Message}), and restoring the previous version of {string.Join(", ", failures.Select(f => Path.GetFileName(f.Destination)))} failed too; the folder may hold a mix of old and new files.",
                    new AggregateException([e, .. failures.Select(f => f.Error)]));
            }

            throw new IOException($"Writing into '{_target}' failed; its previous files are unchanged: {e.Message}", e);
        }
    }

    /// <summary>Deletes the staging folder if it is still there.</summary>
    public void Dispose()
    {
        try
        {
            if (Directory.Exists(_staging))
            {
                Directory.Delete(_staging, recursive: true);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: a staging folder that cannot be removed is hidden and never read; the original outcome matters more.
        }
    }

    // Undoes the moves in reverse order; returns the ones that could not be undone.
    private static List<(string Destination, Exception Error)> Restore(List<(string Destination, string? Backup)> moved)
    {
        var failures = new List<(string, Exception)>();
        for (int i = moved.Count - 1; i >= 0; i--)
        {
            var (destination, backup) = moved[i];
            try
            {
                if (backup is null)
                {
                    File.Delete(destination);
                }
                else
                {
                    File.Move(backup, destination, overwrite: true);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                failures.Add((destination, e));
            }
        }

        return failures;
    }
}
