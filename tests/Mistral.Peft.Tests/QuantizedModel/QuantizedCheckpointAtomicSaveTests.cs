using Mistral.Peft.Quantization;

namespace Mistral.Peft.Tests.QuantizedModel;

/// <summary>QuantizedCheckpoint.Save replaces model.safetensors and config.json as one unit.</summary>
public sealed class QuantizedCheckpointAtomicSaveTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Dictionary<string, byte[]> FolderBytes() =>
        Directory.GetFiles(_dir).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes, StringComparer.Ordinal);

    private void NoStagingFolderLeft()
    {
        string parent = Path.GetDirectoryName(Path.GetFullPath(_dir))!;
        Directory.GetDirectories(parent, "." + Path.GetFileName(_dir) + ".*").Should().BeEmpty();
        Directory.GetFileSystemEntries(_dir, "*.tmp", SearchOption.AllDirectories).Should().BeEmpty();
    }

    private static QuantizedLoadOptions SingleQuant => new() { Nf4 = new Nf4Options { DoubleQuant = false } };

    [Fact]
    public void ACancellationBetweenTheTwoFilesLeavesThePreviousCheckpointUntouched()
    {
        using (var first = QuantizedModelLoader.Load(TinyCheckpoints.Folder()).Model)
        {
            QuantizedCheckpoint.Save(first, _dir);
        }

        File.WriteAllText(Path.Combine(_dir, "tokenizer.model"), "not ours");
        var before = FolderBytes();
        using var other = QuantizedModelLoader.Load(TinyCheckpoints.Folder(), SingleQuant).Model;
        using var cts = new CancellationTokenSource();
        var staged = new List<string>();
        FluentActions.Invoking(() => QuantizedCheckpoint.Save(other, _dir, cts.Token, name =>
        {
            staged.Add(name);
            cts.Cancel();
        })).Should().Throw<OperationCanceledException>();
        staged.Should().Equal("model.safetensors");
        FolderBytes().Should().BeEquivalentTo(before);
        NoStagingFolderLeft();

        // Without the failure both files are replaced and the other file is kept.
        QuantizedCheckpoint.Save(other, _dir);
        FolderBytes()["tokenizer.model"].Should().Equal(before["tokenizer.model"]);
        FolderBytes()["model.safetensors"].Should().NotEqual(before["model.safetensors"]);
        File.ReadAllText(Path.Combine(_dir, "config.json")).Should().Contain("\"bnb_4bit_use_double_quant\": false");
        NoStagingFolderLeft();
    }

    [Fact]
    public void AFailedSwapPutsThePreviousCheckpointBack()
    {
        using (var first = QuantizedModelLoader.Load(TinyCheckpoints.Folder()).Model)
        {
            QuantizedCheckpoint.Save(first, _dir);
        }

        var before = FolderBytes();
        using var other = QuantizedModelLoader.Load(TinyCheckpoints.Folder(), SingleQuant).Model;
        FluentActions.Invoking(() => QuantizedCheckpoint.Save(other, _dir, CancellationToken.None, fileStaged: null, commitStep: step =>
        {
            if (step == Mistral.Peft.IO.StagedFolder.CommitStep.Swap)
            {
                throw new IOException("disk unplugged");
            }
        })).Should().Throw<IOException>().WithMessage("*previous files are unchanged*");
        FolderBytes().Should().BeEquivalentTo(before);
        NoStagingFolderLeft();
    }
}
