using Mistral.Core.Build;

namespace Mistral.Core.Tests;

public class ElfVersionPatcherTests
{
    private static string NativeLibrary()
    {
        string? found = Directory.EnumerateFiles(AppContext.BaseDirectory, "libLibTorchSharp.so", SearchOption.AllDirectories).FirstOrDefault();
        return found ?? throw new FileNotFoundException("libLibTorchSharp.so is not in the test output folder.");
    }

    // The package's own copy, which the build never touches (the patch only edits copies in output folders).
    private static string PackageLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        return File.Exists(path) ? path : throw new FileNotFoundException($"TorchSharp's package copy is not at {path}.");
    }

    [Fact]
    public void PatchSetsOnlyTheWeakFlagAndIsIdempotent()
    {
        string copy = Path.Combine(TestPaths.TempDir(), "libLibTorchSharp.so");
        File.Copy(PackageLibrary(), copy);
        var requirement = ElfVersionPatcher.ReadRequirements(copy).Single(r => r.Version == "GLIBCXX_3.4.32");
        requirement.File.Should().Be("libstdc++.so.6");
        requirement.Weak.Should().BeFalse("TorchSharp 0.107 ships the requirement strong");
        byte[] original = File.ReadAllBytes(copy);
        DateTime stamp = File.GetLastWriteTimeUtc(copy);

        ElfVersionPatcher.MarkVersionWeak(copy, "GLIBCXX_3.4.32").Should().Be(ElfPatchResult.Patched);
        byte[] patched = File.ReadAllBytes(copy);
        patched.Length.Should().Be(original.Length);
        int[] changed = Enumerable.Range(0, original.Length).Where(i => original[i] != patched[i]).ToArray();
        changed.Should().ContainSingle("only the low byte of vna_flags changes");
        (patched[changed[0]] ^ original[changed[0]]).Should().Be(0x2, "VER_FLG_WEAK is bit 1");
        File.GetLastWriteTimeUtc(copy).Should().Be(stamp, "the timestamp is kept so MSBuild does not copy the file again");

        ElfVersionPatcher.ReadRequirements(copy).Single(r => r.Version == "GLIBCXX_3.4.32").Weak.Should().BeTrue();
        ElfVersionPatcher.ReadRequirements(copy).Where(r => r.Version != "GLIBCXX_3.4.32").Should().OnlyContain(r => !r.Weak);

        ElfVersionPatcher.MarkVersionWeak(copy, "GLIBCXX_3.4.32").Should().Be(ElfPatchResult.AlreadyWeak);
        File.ReadAllBytes(copy).Should().Equal(patched, "a second run writes nothing");
        Directory.GetFiles(Path.GetDirectoryName(copy)!).Should().ContainSingle("no temporary file is left behind");
    }

    [Fact]
    public void TheBuildPatchedTheOutputCopyOnlyWhenThisHostNeedsIt()
    {
        bool hostHasIt = ElfVersionPatcher.HostLibStdCxxHas("GLIBCXX_3.4.32", out _);
        bool weak = ElfVersionPatcher.ReadRequirements(NativeLibrary()).Single(r => r.Version == "GLIBCXX_3.4.32").Weak;
        weak.Should().Be(!hostHasIt);
        ElfVersionPatcher.HostLibStdCxxHas("GLIBCXX_3.4.1", out string? lib).Should().BeTrue("every libstdc++.so.6 defines the oldest version");
        lib.Should().EndWith("libstdc++.so.6");
    }

    [Fact]
    public void CompatibleFileIsLeftUntouched()
    {
        string copy = Path.Combine(TestPaths.TempDir(), "libLibTorchSharp.so");
        File.Copy(NativeLibrary(), copy);
        byte[] before = File.ReadAllBytes(copy);
        ElfVersionPatcher.MarkVersionWeak(copy, "GLIBCXX_9.9.99").Should().Be(ElfPatchResult.NotRequired);
        File.ReadAllBytes(copy).Should().Equal(before);
    }

    [Fact]
    public void NonElfFileIsAClearError()
    {
        string path = Path.Combine(TestPaths.TempDir(), "x.so");
        File.WriteAllText(path, "not an elf file at all, just text padding padding padding padding");
        Action act = () => ElfVersionPatcher.MarkVersionWeak(path, "GLIBCXX_3.4.32");
        act.Should().Throw<InvalidDataException>().WithMessage($"{path}: not an ELF file.");
    }

    [Fact]
    public void TheLoadedLibraryWorks()
    {
        using var t = TorchSharp.torch.ones(3, 3);
        t.sum().item<float>().Should().Be(9f);
    }
}
