using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.IO;
using Mistral.Peft.Lora;

namespace Mistral.Peft.Tests.Reliability;

/// <summary>
/// Issue 11 §1: a folder save is one atomic step. A process killed at any point of the commit leaves, after the
/// recovery that the next load or save runs, either the complete previous set of files or the complete new one — never
/// new weights next to the old <c>adapter_config.json</c> — and <see cref="PeftAdapter.Load"/> refuses such a mix anyway.
/// </summary>
public sealed class AtomicFolderSaveTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Stands for the process being killed: not an <see cref="IOException"/>, so no rollback code runs.</summary>
    private sealed class SimulatedKillException : Exception
    {
    }

    private static LoraOptions Old => new() { R = 4, Alpha = 8, Init = LoraInit.LinearDefault, Seed = 4, TargetModules = ["q_proj", "v_proj"] };

    // The case: same rank and targets, so only the config's alpha tells the two saves apart.
    private static LoraOptions New => Old with { Alpha = 32, Seed = 7 };

    private static void SaveAdapter(LoraOptions options, string folder)
    {
        using var model = TinyModels.RandomModel();
        PeftAdapter.Save(LoraInjector.Inject(model, options), folder);
    }

    private static Dictionary<string, byte[]> Files(string folder) =>
        Directory.GetFiles(folder).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes, StringComparer.Ordinal);

    private string[] HiddenLeftovers(string target) =>
        Directory.GetDirectories(_dir, "." + Path.GetFileName(target) + ".*");

    private static void ShouldEqual(Dictionary<string, byte[]> actual, Dictionary<string, byte[]> expected)
    {
        actual.Keys.Should().BeEquivalentTo(expected.Keys);
        foreach (var (name, bytes) in expected)
        {
            actual[name].Should().Equal(bytes, $"{name} must belong to one save");
        }
    }

    /// <summary>The old adapter (with a README kept across saves) and the new adapter's two files.</summary>
    private (string Target, Dictionary<string, byte[]> OldSet, Dictionary<string, byte[]> NewSet) Prepare()
    {
        string target = Path.Combine(_dir, "adapter");
        SaveAdapter(Old, target);
        File.WriteAllText(Path.Combine(target, "README.md"), "model card");
        string reference = Path.Combine(_dir, "reference");
        SaveAdapter(New, reference);
        var oldSet = Files(target);
        var newSet = Files(reference);
        newSet["README.md"] = oldSet["README.md"];
        Directory.Delete(reference, recursive: true);
        return (target, oldSet, newSet);
    }

    [Theory]
    [InlineData((int)StagedFolder.CommitStep.CopyKeptFiles, false)]
    [InlineData((int)StagedFolder.CommitStep.Seal, false)]
    [InlineData((int)StagedFolder.CommitStep.MovePreviousAside, false)]
    [InlineData((int)StagedFolder.CommitStep.Swap, true)]
    [InlineData((int)StagedFolder.CommitStep.DeletePrevious, true)]
    public void AKillBeforeAnyStepOfTheCommitLeavesTheOldOrTheNewAdapterAfterRecoveryByLoad(int killedBeforeStep, bool expectNew)
    {
        var killedBefore = (StagedFolder.CommitStep)killedBeforeStep;
        var (target, oldSet, newSet) = Prepare();

        // A real kill runs no finally block: stage the new files by hand and never dispose the staged folder.
        var staged = StagedFolder.Create(target);
        using (var model = TinyModels.RandomModel())
        {
            string scratch = Path.Combine(_dir, "scratch");
            PeftAdapter.Save(LoraInjector.Inject(model, New), scratch);
            foreach (string name in new[] { PeftAdapter.WeightsFileName, PeftAdapter.ConfigFileName })
            {
                File.Copy(Path.Combine(scratch, name), staged.PathFor(name));
            }

            Directory.Delete(scratch, recursive: true);
        }

        FluentActions.Invoking(() => staged.Commit([PeftAdapter.WeightsFileName, PeftAdapter.ConfigFileName], step =>
        {
            if (step == killedBefore)
            {
                throw new SimulatedKillException();
            }
        })).Should().Throw<SimulatedKillException>();

        // The load recovers the interrupted swap first, then reads one consistent adapter.
        using var fresh = TinyModels.RandomModel();
        var loaded = PeftAdapter.Load(fresh, target);
        loaded.Options.Alpha.Should().Be(expectNew ? 32 : 8);
        ShouldEqual(Files(target), expectNew ? newSet : oldSet);
        HiddenLeftovers(target).Should().BeEmpty();
    }

    [Theory]
    [InlineData((int)StagedFolder.CommitStep.CopyKeptFiles)]
    [InlineData((int)StagedFolder.CommitStep.Seal)]
    [InlineData((int)StagedFolder.CommitStep.MovePreviousAside)]
    [InlineData((int)StagedFolder.CommitStep.Swap)]
    [InlineData((int)StagedFolder.CommitStep.DeletePrevious)]
    public void AKillDuringASaveIsRecoveredByTheNextSave(int killedBeforeStep)
    {
        var killedBefore = (StagedFolder.CommitStep)killedBeforeStep;
        var (target, _, newSet) = Prepare();
        using (var model = TinyModels.RandomModel())
        {
            var lora = LoraInjector.Inject(model, Old with { Seed = 11 });
            FluentActions.Invoking(() => PeftAdapter.Save(lora, target, null, CancellationToken.None, fileStaged: null, commitStep: step =>
            {
                if (step == killedBefore)
                {
                    throw new SimulatedKillException();
                }
            })).Should().Throw<SimulatedKillException>();
        }

        SaveAdapter(New, target);
        ShouldEqual(Files(target), newSet);
        HiddenLeftovers(target).Should().BeEmpty();
    }

    [Fact]
    public void LoadRefusesNewWeightsNextToTheOldConfig()
    {
        // The mix the issue found after a kill between the two renames of the old commit: alpha 32 weights, alpha 8 config.
        string target = Path.Combine(_dir, "adapter");
        string other = Path.Combine(_dir, "other");
        SaveAdapter(Old, target);
        SaveAdapter(New, other);
        File.Copy(Path.Combine(other, PeftAdapter.WeightsFileName), Path.Combine(target, PeftAdapter.WeightsFileName), overwrite: true);

        using var fresh = TinyModels.RandomModel();
        FluentActions.Invoking(() => PeftAdapter.Load(fresh, target)).Should().Throw<InvalidDataException>()
            .WithMessage($"*{PeftAdapter.WeightsFileName}*lora_alpha 32 (config 8)*different saves*");
        ModuleTree.NamedModules(fresh).Should().NotContain(m => m.Module is LoraLinear, "a refused load leaves the model unchanged");
    }

    [Fact]
    public void OrphanedStagingFoldersAreDeletedByTheNextSaveButSiblingsAreNot()
    {
        string target = Path.Combine(_dir, "adapter");
        SaveAdapter(Old, target);
        string orphan = Path.Combine(_dir, $".adapter.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(orphan);
        File.WriteAllText(Path.Combine(orphan, PeftAdapter.WeightsFileName), "half written");
        string sibling = Path.Combine(_dir, ".adapter.notes");
        Directory.CreateDirectory(sibling);

        SaveAdapter(New, target);
        Directory.Exists(orphan).Should().BeFalse();
        Directory.Exists(sibling).Should().BeTrue("only this class's own hidden folders are removed");
        PeftAdapter.ReadConfig(target).LoraAlpha.Should().Be(32);
    }

    [Fact]
    public void AFailedSwapPutsThePreviousFolderBack()
    {
        var (target, oldSet, _) = Prepare();
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, New);
        FluentActions.Invoking(() => PeftAdapter.Save(lora, target, null, CancellationToken.None, fileStaged: null, commitStep: step =>
        {
            if (step == StagedFolder.CommitStep.Swap)
            {
                throw new IOException("disk unplugged");
            }
        })).Should().Throw<IOException>().WithMessage($"*{target}*previous files are unchanged*disk unplugged*");
        ShouldEqual(Files(target), oldSet);
        HiddenLeftovers(target).Should().BeEmpty();
    }
}
