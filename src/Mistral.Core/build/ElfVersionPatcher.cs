// Shipped as source inside the Mistral.Core package (build/ and buildTransitive/) and compiled by
// MSBuild's RoslynCodeTaskFactory; the test project compiles it too, with MISTRAL_ELF_PATCHER_NO_TASK.
// It marks one symbol-version requirement of an ELF64 little-endian shared object as weak
// (VER_FLG_WEAK in its Vernaux entry), so that the dynamic loader accepts the library on hosts whose
// libstdc++ lacks that version. Every other byte of the file is left as it is.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Mistral.Core.Build
{
    /// <summary>The outcome of <see cref="ElfVersionPatcher.MarkVersionWeak"/>.</summary>
    public enum ElfPatchResult
    {
        /// <summary>The requirement was strong and is now weak.</summary>
        Patched,
        /// <summary>The requirement was already weak: nothing was written.</summary>
        AlreadyWeak,
        /// <summary>The file does not require that version: nothing was written.</summary>
        NotRequired,
    }

    /// <summary>Reads and edits the GNU symbol-version requirements (.gnu.version_r) of an ELF64 file.</summary>
    public static class ElfVersionPatcher
    {
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const ushort VerFlgWeak = 0x2;

        /// <summary>Marks <paramref name="version"/> (for example GLIBCXX_3.4.32) weak in <paramref name="path"/>.</summary>
        /// <remarks>Writes to a temporary file beside the original and renames it over, so a failure never leaves a half-written library.</remarks>
        public static ElfPatchResult MarkVersionWeak(string path, string version)
        {
            byte[] bytes = File.ReadAllBytes(path);
            List<int> flagOffsets = FindVernauxFlagOffsets(bytes, version, path);
            if (flagOffsets.Count == 0)
            {
                return ElfPatchResult.NotRequired;
            }

            bool changed = false;
            foreach (int offset in flagOffsets)
            {
                ushort flags = BitConverter.ToUInt16(bytes, offset);
                if ((flags & VerFlgWeak) == 0)
                {
                    flags |= VerFlgWeak;
                    bytes[offset] = (byte)(flags & 0xff);
                    bytes[offset + 1] = (byte)(flags >> 8);
                    changed = true;
                }
            }

            if (!changed)
            {
                return ElfPatchResult.AlreadyWeak;
            }

            string temp = path + ".mistral-patch.tmp";
            DateTime stamp = File.GetLastWriteTimeUtc(path);
            try
            {
                File.WriteAllBytes(temp, bytes);
                File.Replace(temp, path, null);
                // Keep the copy's timestamp: MSBuild then sees it as up to date with the package's file and does not
                // copy (and patch) it again on the next build.
                File.SetLastWriteTimeUtc(path, stamp);
            }
            finally
            {
                if (File.Exists(temp))
                {
                    File.Delete(temp);
                }
            }

            return ElfPatchResult.Patched;
        }

        /// <summary>Lists the version names required by an ELF64 file, with whether each is weak.</summary>
        public static IReadOnlyList<(string File, string Version, bool Weak)> ReadRequirements(string path)
        {
            byte[] bytes = File.ReadAllBytes(path);
            var result = new List<(string, string, bool)>();
            Walk(bytes, path, (file, name, flagsOffset) =>
                result.Add((file, name, (BitConverter.ToUInt16(bytes, flagsOffset) & VerFlgWeak) != 0)));
            return result;
        }

        /// <summary>True when a libstdc++ found in the usual library folders of this host defines <paramref name="version"/>.</summary>
        public static bool HostLibStdCxxHas(string version, out string? found)
        {
            string[] candidates =
            {
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                "/lib/x86_64-linux-gnu/libstdc++.so.6",
                "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
                "/lib/aarch64-linux-gnu/libstdc++.so.6",
                "/usr/lib64/libstdc++.so.6",
                "/lib64/libstdc++.so.6",
                "/usr/lib/libstdc++.so.6",
                "/usr/local/lib64/libstdc++.so.6",
                "/usr/local/lib/libstdc++.so.6",
            };
            byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
            found = null;
            foreach (string candidate in candidates)
            {
                if (!File.Exists(candidate))
                {
                    continue;
                }

                found ??= candidate;
                byte[] lib = File.ReadAllBytes(candidate);
                if (Contains(lib, needle))
                {
                    found = candidate;
                    return true;
                }
            }

            return false;
        }

        private static bool Contains(byte[] haystack, byte[] needle)
        {
            for (int i = 0; i <= haystack.Length - needle.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && haystack[i + j] == needle[j])
                {
                    j++;
                }

                if (j == needle.Length)
                {
                    return true;
                }
            }

            return false;
        }

        private static List<int> FindVernauxFlagOffsets(byte[] bytes, string version, string path)
        {
            var offsets = new List<int>();
            Walk(bytes, path, (file, name, flagsOffset) =>
            {
                if (name == version)
                {
                    offsets.Add(flagsOffset);
                }
            });
            return offsets;
        }

        private static void Walk(byte[] b, string path, Action<string, string, int> onVernaux)
        {
            if (b.Length < 64 || b[0] != 0x7f || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F')
            {
                throw new InvalidDataException($"{path}: not an ELF file.");
            }

            if (b[4] != 2 || b[5] != 1)
            {
                throw new InvalidDataException($"{path}: only 64-bit little-endian ELF files are supported (class {b[4]}, data {b[5]}).");
            }

            ulong shoff = U64(b, 0x28, path);
            ushort shentsize = U16(b, 0x3A, path);
            ushort shnum = U16(b, 0x3C, path);
            for (int i = 0; i < shnum; i++)
            {
                int sh = Checked(shoff + (ulong)i * shentsize, 64, b, path);
                if (U32(b, sh + 4, path) != ShtGnuVerneed)
                {
                    continue;
                }

                ulong offset = U64(b, sh + 0x18, path);
                uint link = U32(b, sh + 0x28, path);
                uint count = U32(b, sh + 0x2C, path);
                int strSh = Checked(shoff + (ulong)link * shentsize, 64, b, path);
                ulong strOffset = U64(b, strSh + 0x18, path);

                ulong vn = offset;
                for (uint n = 0; n < count; n++)
                {
                    int v = Checked(vn, 16, b, path);
                    ushort cnt = U16(b, v + 2, path);
                    string file = CString(b, strOffset + U32(b, v + 4, path), path);
                    ulong aux = vn + U32(b, v + 8, path);
                    for (int a = 0; a < cnt; a++)
                    {
                        int x = Checked(aux, 16, b, path);
                        string name = CString(b, strOffset + U32(b, x + 8, path), path);
                        onVernaux(file, name, x + 4);
                        aux += U32(b, x + 12, path);
                    }

                    uint next = U32(b, v + 12, path);
                    if (next == 0)
                    {
                        break;
                    }

                    vn += next;
                }
            }
        }

        private static int Checked(ulong offset, int size, byte[] b, string path)
        {
            if (offset > (ulong)(b.Length - size))
            {
                throw new InvalidDataException($"{path}: ELF structure at offset {offset} lies outside the file ({b.Length} bytes).");
            }

            return (int)offset;
        }

        private static ushort U16(byte[] b, int o, string p) => BitConverter.ToUInt16(b, Checked((ulong)o, 2, b, p));

        private static uint U32(byte[] b, int o, string p) => BitConverter.ToUInt32(b, Checked((ulong)o, 4, b, p));

        private static ulong U64(byte[] b, int o, string p) => BitConverter.ToUInt64(b, Checked((ulong)o, 8, b, p));

        private static string CString(byte[] b, ulong o, string p)
        {
            int start = Checked(o, 1, b, p);
            int end = Array.IndexOf(b, (byte)0, start);
            if (end < 0)
            {
                throw new InvalidDataException($"{p}: unterminated string at offset {o}.");
            }

            return Encoding.ASCII.GetString(b, start, end - start);
        }
    }

#if !MISTRAL_ELF_PATCHER_NO_TASK
    /// <summary>MSBuild task: patches every libLibTorchSharp.so under <see cref="Directory"/> when the host needs it.</summary>
    public sealed class MistralPatchTorchSharpNative : Microsoft.Build.Utilities.Task
    {
        /// <summary>The output or publish folder to scan.</summary>
        [Microsoft.Build.Framework.Required]
        public string Directory { get; set; } = string.Empty;

        /// <summary>The version requirement to mark weak.</summary>
        public string Version { get; set; } = "GLIBCXX_3.4.32";

        /// <summary>Patch even when this host's libstdc++ has the version (for output that will run on an older system).</summary>
        public bool Always { get; set; }

        /// <inheritdoc />
        public override bool Execute()
        {
            if (!System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Linux)
                || !System.IO.Directory.Exists(Directory))
            {
                return true;
            }

            if (!Always && ElfVersionPatcher.HostLibStdCxxHas(Version, out _))
            {
                return true;
            }

            var patched = new List<string>();
            foreach (string file in System.IO.Directory.EnumerateFiles(Directory, "libLibTorchSharp.so", SearchOption.AllDirectories))
            {
                try
                {
                    if (ElfVersionPatcher.MarkVersionWeak(file, Version) == ElfPatchResult.Patched)
                    {
                        patched.Add(file);
                    }
                }
                catch (Exception e) when (e is IOException || e is InvalidDataException || e is UnauthorizedAccessException)
                {
                    Log.LogWarning($"Mistral.Core: could not patch {file}: {e.Message}");
                }
            }

            if (patched.Count > 0)
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                    Always
                        ? $"Mistral.Core: marked {Version} weak (MistralPatchTorchSharpNative=always) in {string.Join(", ", patched)}"
                        : $"Mistral.Core: this host's libstdc++ lacks {Version}; marked it weak in {string.Join(", ", patched)}");
            }

            return true;
        }
    }
#endif
}
