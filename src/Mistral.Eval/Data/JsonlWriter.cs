using System.Text.Encodings.Web;
using System.Text.Json;

namespace Mistral.Eval.Data;

/// <summary>Writes examples as JSON Lines (one <c>{"input column": …, "target column": …}</c> object per line), atomically.</summary>
public static class JsonlWriter
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, Indented = false };

    /// <summary>
    /// Writes <paramref name="examples"/> to <paramref name="path"/> through a temporary file in the same folder that is
    /// renamed over the target when complete, so readers never see a partial file. UTF-8 without BOM, LF line ends.
    /// </summary>
    /// <param name="path">The file to write (replaced if it exists).</param>
    /// <param name="examples">The examples.</param>
    /// <param name="mapping">The keys to write input and target under.</param>
    /// <param name="cancellationToken">Cancels the write (the temporary file is removed and the target left as it was).</param>
    /// <returns>The number of lines written.</returns>
    public static async Task<long> WriteAsync(string path, IEnumerable<Example> examples, ColumnMapping mapping, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(mapping);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir))
        {
            throw new DirectoryNotFoundException($"Cannot write '{path}': folder '{dir}' does not exist.");
        }

        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        long count = 0;
        try
        {
            await using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                using (var json = new Utf8JsonWriter(stream, WriterOptions))
                {
                    foreach (var e in examples)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        ArgumentNullException.ThrowIfNull(e, nameof(examples));
                        json.WriteStartObject();
                        json.WriteString(mapping.InputColumn, e.Input);
                        json.WriteString(mapping.TargetColumn, e.Target);
                        json.WriteEndObject();
                        await json.FlushAsync(cancellationToken).ConfigureAwait(false);
                        json.Reset();
                        stream.WriteByte((byte)'\n');
                        count++;
                    }

                    await json.FlushAsync(cancellationToken).ConfigureAwait(false);
                }

                await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
            return count;
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // The original error matters more than a leftover temporary file.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
