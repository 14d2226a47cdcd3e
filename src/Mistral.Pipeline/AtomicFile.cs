using System.Text;

namespace Mistral.Pipeline;

/// <summary>Writes a file through a temporary sibling and a rename, so a reader never sees a partial file.</summary>
internal static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Write(path, w => w.Write(text));

    public static void WriteAllLines(string path, IEnumerable<string> lines) => Write(path, w =>
    {
        foreach (string line in lines)
        {
            w.Write(line);
            w.Write('\n');
        }
    });

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        byte[] copy = bytes.ToArray();
        Write(path, w =>
        {
            w.Flush();
            w.BaseStream.Write(copy);
        });
    }

    private static void Write(string path, Action<StreamWriter> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            using (var writer = new StreamWriter(stream, new UTF8Encoding(false)))
            {
                write(writer);
                writer.Flush();
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }
}
