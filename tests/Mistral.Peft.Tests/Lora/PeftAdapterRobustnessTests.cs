using System.Text.Json;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

/// <summary>
/// Partial target lists survive a save/load round trip with PEFT's matching, a failed or cancelled load leaves the
/// model untouched, and a failed or cancelled save leaves the previous adapter files untouched.
/// </summary>
public sealed class PeftAdapterRobustnessTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static LoraOptions Options(long seed = 4) => new() { R = 4, Alpha = 8, Init = LoraInit.LinearDefault, Seed = seed };

    private string[] ConfigList(string key)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, PeftAdapter.ConfigFileName)));
        var v = doc.RootElement.GetProperty(key);
        return v.ValueKind == JsonValueKind.Null ? [] : [.. v.EnumerateArray().Select(e => e.GetString()!)];
    }

    private void RoundTrip(LoraOptions options, string[] expectedLayers)
    {
        expectedLayers = [.. expectedLayers.Order(StringComparer.Ordinal)];
        using var model = TinyModels.RandomModel();
        using var ids = TinyModels.Ids();
        var lora = LoraInjector.Inject(model, options);
        lora.Layers.Keys.Should().Equal(expectedLayers);
        using var expected = TinyModels.Logits(model, ids);
        PeftAdapter.Save(lora, _dir);

        using var fresh = TinyModels.RandomModel();
        var loaded = PeftAdapter.Load(fresh, _dir);
        loaded.Layers.Keys.Should().Equal(expectedLayers);
        ModuleTree.NamedModules(fresh).Where(m => m.Module is LoraLinear).Select(m => m.Name).Should().BeEquivalentTo(expectedLayers);
        using var logits = TinyModels.Logits(fresh, ids);
        TensorChecks.Exactly(logits, expected).Should().BeTrue();
    }

    [Fact]
    public void ADottedTargetIsSavedAsGivenAndLoadsOntoThatModuleOnly()
    {
        RoundTrip(Options() with { TargetModules = ["model.layers.0.self_attn.q_proj", "down_proj"] },
            ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]);
        ConfigList("target_modules").Should().Equal("down_proj", "model.layers.0.self_attn.q_proj");
        ConfigList("exclude_modules").Should().BeEmpty();
    }

    [Fact]
    public void ExcludeModulesAreSavedAsGivenAndAppliedOnLoad()
    {
        RoundTrip(Options() with { TargetModules = ["q_proj", "v_proj"], ExcludeModules = ["model.layers.1.self_attn.v_proj", "layers.0.self_attn.q_proj"] },
            ["model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj"]);
        ConfigList("target_modules").Should().Equal("q_proj", "v_proj");
        ConfigList("exclude_modules").Should().Equal("layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj");
    }

    [Fact]
    public void AllLinearIsSavedAsPeftExpandsItAndAnExclusionOfAWholeEntryStillLoads()
    {
        // PEFT writes all-linear as the set of last name segments of every linear layer but lm_head, exclusions apart.
        RoundTrip(Options() with { TargetModules = [LoraOptions.AllLinear], ExcludeModules = ["down_proj", "model.layers.0.self_attn.k_proj"] },
            [
                "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.self_attn.q_proj",
                "model.layers.0.self_attn.v_proj", "model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj", "model.layers.1.self_attn.k_proj",
                "model.layers.1.self_attn.o_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
            ]);
        ConfigList("target_modules").Should().Equal("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj");
        ConfigList("exclude_modules").Should().Equal("down_proj", "model.layers.0.self_attn.k_proj");
    }

    [Fact]
    public void ExclusionsThatRemoveEveryTargetAreRejectedNamingTheOption()
    {
        using var model = TinyModels.RandomModel();
        FluentActions.Invoking(() => LoraInjector.Inject(model, Options() with { TargetModules = ["q_proj"], ExcludeModules = ["q_proj"] }))
            .Should().Throw<ArgumentException>().WithMessage("*ExcludeModules*q_proj*every one of the 2*");
        ModuleTree.NamedModules(model).Should().NotContain(m => m.Module is LoraLinear);
    }

    private void SaveDefaultAdapter()
    {
        using var model = TinyModels.RandomModel();
        PeftAdapter.Save(LoraInjector.Inject(model, Options() with { TargetModules = ["q_proj", "v_proj"] }), _dir);
    }

    private static void ShouldBeUntouched(MistralForCausalLM model, Dictionary<string, Tensor> before)
    {
        ModuleTree.NamedModules(model).Should().NotContain(m => m.Module is LoraLinear);
        var now = model.named_parameters().ToList();
        now.Select(p => p.name).Should().Equal(before.Keys);
        foreach (var (name, p) in now)
        {
            p.requires_grad.Should().BeTrue($"'{name}' must not have been frozen");
            TensorChecks.Exactly(p, before[name]).Should().BeTrue();
        }
    }

    private static Dictionary<string, Tensor> Snapshot(MistralForCausalLM model) =>
        model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    [Fact]
    public void ACancelledLoadLeavesTheModelUnchanged()
    {
        SaveDefaultAdapter();
        using var scope = NewDisposeScope();
        using var model = TinyModels.RandomModel();
        var before = Snapshot(model);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        FluentActions.Invoking(() => PeftAdapter.Load(model, _dir, cancellationToken: cts.Token)).Should().Throw<OperationCanceledException>();
        ShouldBeUntouched(model, before);
    }

    [Fact]
    public void ANonFloatingTensorIsRejectedNamingTheKeyBeforeTheModelChanges()
    {
        SaveDefaultAdapter();
        string weights = Path.Combine(_dir, PeftAdapter.WeightsFileName);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var file = SafeTensorsFile.Open(weights))
        {
            foreach (string key in file.Tensors.Keys)
            {
                // Same shapes; one tensor's data reinterpreted as int32 (a corrupt writer).
                tensors[key] = key.EndsWith("layers.1.self_attn.v_proj.lora_B.weight", StringComparison.Ordinal)
                    ? file.Load(key).to(ScalarType.Int32)
                    : file.Load(key);
            }
        }

        SafeTensorsWriter.Write(weights, tensors);
        foreach (var t in tensors.Values)
        {
            t.Dispose();
        }

        using var scope = NewDisposeScope();
        using var model = TinyModels.RandomModel();
        var before = Snapshot(model);
        FluentActions.Invoking(() => PeftAdapter.Load(model, _dir)).Should().Throw<InvalidDataException>()
            .WithMessage("*adapter_model.safetensors*'base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight' is I32*");
        ShouldBeUntouched(model, before);
    }

    [Fact]
    public void ATruncatedWeightsFileIsRejectedBeforeTheModelChanges()
    {
        SaveDefaultAdapter();
        string weights = Path.Combine(_dir, PeftAdapter.WeightsFileName);
        using (var fs = new FileStream(weights, FileMode.Open))
        {
            fs.SetLength(fs.Length - 7);
        }

        using var scope = NewDisposeScope();
        using var model = TinyModels.RandomModel();
        var before = Snapshot(model);
        FluentActions.Invoking(() => PeftAdapter.Load(model, _dir)).Should().Throw<InvalidDataException>().WithMessage("*adapter_model.safetensors*");
        ShouldBeUntouched(model, before);
    }

    [Fact]
    public void ACancelledLoadWeightsLeavesTheAdapterUnchanged()
    {
        SaveDefaultAdapter();
        using var scope = NewDisposeScope();
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, Options(seed: 99) with { TargetModules = ["q_proj", "v_proj"] });
        var before = lora.NamedAdapterParameters().Select(kv => kv.Value.detach().clone()).ToList();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        FluentActions.Invoking(() => PeftAdapter.LoadWeights(lora, _dir, cts.Token)).Should().Throw<OperationCanceledException>();
        lora.NamedAdapterParameters().Select(kv => kv.Value).Zip(before).Should().OnlyContain(p => TensorChecks.Exactly(p.First, p.Second));
    }

    private Dictionary<string, byte[]> FolderBytes() =>
        Directory.GetFiles(_dir).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes, StringComparer.Ordinal);

    private void NoStagingFolderLeft()
    {
        string parent = Path.GetDirectoryName(Path.GetFullPath(_dir))!;
        Directory.GetDirectories(parent, "." + Path.GetFileName(_dir) + ".*").Should().BeEmpty();
        Directory.GetFileSystemEntries(_dir, "*.tmp", SearchOption.AllDirectories).Should().BeEmpty();
    }

    [Fact]
    public void ACancellationBetweenTheTwoFilesLeavesThePreviousAdapterUntouched()
    {
        SaveDefaultAdapter();
        var before = FolderBytes();
        using var model = TinyModels.RandomModel();
        var other = LoraInjector.Inject(model, Options(seed: 7) with { TargetModules = ["k_proj"], R = 2 });
        using var cts = new CancellationTokenSource();
        FluentActions.Invoking(() => PeftAdapter.Save(other, _dir, null, cts.Token, name =>
        {
            if (name == PeftAdapter.WeightsFileName)
            {
                cts.Cancel();
            }
        })).Should().Throw<OperationCanceledException>();
        FolderBytes().Should().BeEquivalentTo(before);
        NoStagingFolderLeft();
    }

    [Fact]
    public void AFailureMovingThePreviousFolderAsideLeavesItUnchanged()
    {
        // The commit swaps whole folders: a failing rename of the previous folder (a reader holding it open on Windows) leaves it as it was.
        SaveDefaultAdapter();
        var before = FolderBytes();
        using var model = TinyModels.RandomModel();
        var other = LoraInjector.Inject(model, Options(seed: 7) with { TargetModules = ["k_proj"], R = 2 });
        FluentActions.Invoking(() => PeftAdapter.Save(other, _dir, null, CancellationToken.None, fileStaged: null, commitStep: step =>
        {
            if (step == Mistral.Peft.IO.StagedFolder.CommitStep.MovePreviousAside)
            {
                throw new IOException("in use");
            }
        })).Should().Throw<IOException>().WithMessage($"*{_dir}*previous files are unchanged*");
        FolderBytes().Should().BeEquivalentTo(before);
        NoStagingFolderLeft();
    }

    [Fact]
    public void SavingIntoAFolderThatDoesNotExistCreatesItWithBothFiles()
    {
        string target = Path.Combine(_dir, "new", "adapter");
        using var model = TinyModels.RandomModel();
        PeftAdapter.Save(LoraInjector.Inject(model, Options() with { TargetModules = ["q_proj"] }), target);
        Directory.GetFileSystemEntries(target).Select(Path.GetFileName).Should().BeEquivalentTo([PeftAdapter.ConfigFileName, PeftAdapter.WeightsFileName]);
        Directory.GetFileSystemEntries(Path.Combine(_dir, "new")).Select(Path.GetFileName).Should().Equal("adapter");
        // and an existing folder keeps unrelated files while both adapter files are replaced
        File.WriteAllText(Path.Combine(target, "README.md"), "mine");
        using var model2 = TinyModels.RandomModel();
        PeftAdapter.Save(LoraInjector.Inject(model2, Options(seed: 9) with { TargetModules = ["v_proj"] }), target);
        File.ReadAllText(Path.Combine(target, "README.md")).Should().Be("mine");
        PeftAdapter.ReadConfig(target).TargetModules.Should().Equal("v_proj");
    }
}
