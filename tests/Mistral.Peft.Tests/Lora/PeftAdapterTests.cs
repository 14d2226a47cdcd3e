using System.Text.Json;
using Microsoft.Extensions.Logging;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

public sealed class PeftAdapterTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static LoraOptions Random(long seed = 4) => new() { TargetModules = ["q_proj", "v_proj", "down_proj"], R = 4, Alpha = 8, Dropout = 0.05, Init = LoraInit.LinearDefault, Seed = seed };

    private LoraModel SaveRandomAdapter(out Tensor logits, out Tensor ids)
    {
        var model = TinyModels.RandomModel(); // disposed by the caller through lora.Model
        var lora = LoraInjector.Inject(model, Random());
        ids = TinyModels.Ids();
        logits = TinyModels.Logits(model, ids);
        PeftAdapter.Save(lora, _dir, "tiny-random-mistral");
        return lora;
    }

    [Fact]
    public void SaveWritesPeftsKeysShapesMetadataAndConfig()
    {
        var lora = SaveRandomAdapter(out var logits, out var ids);
        using var owned = lora.Model;
        logits.Dispose();
        ids.Dispose();
        Directory.GetFiles(_dir).Select(Path.GetFileName).Should().BeEquivalentTo(["adapter_config.json", "adapter_model.safetensors"]);
        using (var file = SafeTensorsFile.Open(Path.Combine(_dir, "adapter_model.safetensors")))
        {
            // PEFT's {"format":"pt"}, plus r and lora_alpha so that a load can tell weights of another save (issue 11).
            file.Metadata.Should().BeEquivalentTo(new Dictionary<string, string> { ["format"] = "pt", ["lora_r"] = "4", ["lora_alpha"] = "8" });
            file.Tensors.Should().HaveCount(12);
            file.Tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].Shape.Should().Equal(4L, 32L);
            file.Tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].Shape.Should().Equal(32L, 4L);
            file.Tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"].Shape.Should().Equal(8L, 4L);
            file.Tensors["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"].Shape.Should().Equal(4L, 48L);
            file.Tensors.Values.Should().OnlyContain(t => t.DType == ScalarType.Float32);
            using var a = file.Load("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
            TensorChecks.Exactly(a, lora.Layers["model.layers.1.mlp.down_proj"].LoraA.detach()).Should().BeTrue();
        }

        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "adapter_config.json")));
        var root = doc.RootElement;
        root.GetProperty("peft_type").GetString().Should().Be("LORA");
        root.GetProperty("task_type").GetString().Should().Be("CAUSAL_LM");
        root.GetProperty("r").GetInt32().Should().Be(4);
        root.GetProperty("lora_alpha").GetRawText().Should().Be("8");
        root.GetProperty("lora_dropout").GetDouble().Should().Be(0.05);
        root.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()).Should().Equal("down_proj", "q_proj", "v_proj");
        root.GetProperty("bias").GetString().Should().Be("none");
        root.GetProperty("fan_in_fan_out").GetBoolean().Should().BeFalse();
        root.GetProperty("use_rslora").GetBoolean().Should().BeFalse();
        root.GetProperty("inference_mode").GetBoolean().Should().BeTrue();
        root.GetProperty("init_lora_weights").GetBoolean().Should().BeFalse();
        root.GetProperty("base_model_name_or_path").GetString().Should().Be("tiny-random-mistral");
        root.EnumerateObject().Select(p => p.Name).Should().BeInAscendingOrder(StringComparer.Ordinal);
        Directory.GetFiles(_dir, "*.tmp", SearchOption.AllDirectories).Should().BeEmpty();
    }

    [Fact]
    public void SaveThenLoadOntoAFreshBaseGivesIdenticalLogits()
    {
        using var saved = SaveRandomAdapter(out var expected, out var ids).Model;
        using (expected)
        using (ids)
        {
            using var fresh = TinyModels.RandomModel();
            var loaded = PeftAdapter.Load(fresh, _dir);
            loaded.Layers.Should().HaveCount(6);
            loaded.Options.R.Should().Be(4);
            loaded.Options.Alpha.Should().Be(8);
            loaded.Options.Dropout.Should().Be(0.05);
            using var logits = TinyModels.Logits(fresh, ids);
            TensorChecks.Exactly(logits, expected).Should().BeTrue();
            loaded.TrainableParameters().Trainable.Should().Be(loaded.AdapterParameters().Sum(p => p.numel()));
        }
    }

    [Fact]
    public void LoadWeightsIntoAnAdaptedModelOverwritesTheAdapter()
    {
        using var saved = SaveRandomAdapter(out var expected, out var ids).Model;
        using (expected)
        using (ids)
        {
            using var fresh = TinyModels.RandomModel();
            var other = LoraInjector.Inject(fresh, Random(seed: 99));
            PeftAdapter.LoadWeights(other, _dir);
            using var logits = TinyModels.Logits(fresh, ids);
            TensorChecks.Exactly(logits, expected).Should().BeTrue();
        }
    }

    [Fact]
    public void WrongBaseIsReportedWithTheKeyAndBothShapesBeforeTheModelIsChanged()
    {
        using var saved = SaveRandomAdapter(out var l, out var i).Model;
        l.Dispose();
        i.Dispose();
        using var wider = TinyModels.RandomModel(TinyModels.Tiny(hidden: 40));
        var e = FluentActions.Invoking(() => PeftAdapter.Load(wider, _dir)).Should().Throw<AdapterMismatchException>().Which;
        e.Message.Should().Contain("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight: adapter [4, 32] vs model [4, 40]");
        // q_proj/v_proj A [4, hidden] and down_proj B [hidden, 4] change; q/v B and down A do not.
        e.MisShaped.Should().HaveCount(6);
        e.Message.Should().Contain("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight: adapter [32, 4] vs model [40, 4]");
        e.Missing.Should().BeEmpty();
        ModuleTree.NamedModules(wider).Should().NotContain(m => m.Module is LoraLinear);
        wider.parameters().Should().OnlyContain(p => p.requires_grad);
    }

    [Fact]
    public void MissingAndUnexpectedKeysAreListed()
    {
        using var saved = SaveRandomAdapter(out var l, out var i).Model;
        l.Dispose();
        i.Dispose();
        string weights = Path.Combine(_dir, "adapter_model.safetensors");
        var tensors = new Dictionary<string, Tensor>();
        using (var file = SafeTensorsFile.Open(weights))
        {
            foreach (string key in file.Tensors.Keys.Where(k => !k.Contains("layers.1.mlp.down_proj.lora_B")))
            {
                string name = key.Contains("layers.0.self_attn.v_proj.lora_A") ? key.Replace("lora_A.weight", "lora_A.default.weight") : key;
                tensors[name] = file.Load(key);
            }
        }

        SafeTensorsWriter.Write(weights, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        using var fresh = TinyModels.RandomModel();
        var e = FluentActions.Invoking(() => PeftAdapter.Load(fresh, _dir)).Should().Throw<AdapterMismatchException>().Which;
        e.Missing.Should().Equal(
            "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
            "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
        e.Unexpected.Should().Equal("base_model.model.model.layers.0.self_attn.v_proj.lora_A.default.weight");
        e.Message.Should().Contain("2 missing key(s)").And.Contain("1 unexpected key(s)");
        foreach (var t in tensors.Values)
        {
            t.Dispose();
        }
    }

    [Fact]
    public void UnsupportedPeftTypeAndFeaturesAreNamed()
    {
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"peft_type":"IA3","r":8,"lora_alpha":8}"""))
            .Should().Throw<NotSupportedException>().WithMessage("*peft_type 'IA3' is not supported*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":8,"lora_alpha":8,"use_dora":true}"""))
            .Should().Throw<NotSupportedException>().WithMessage("*'use_dora' is true*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":8,"lora_alpha":8,"rank_pattern":{"q_proj":4}}"""))
            .Should().Throw<NotSupportedException>().WithMessage("*'rank_pattern'*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":8,"lora_alpha":8,"bias":"all"}"""))
            .Should().Throw<NotSupportedException>().WithMessage("*bias 'all'*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":8,"lora_alpha":8,"fan_in_fan_out":true}"""))
            .Should().Throw<NotSupportedException>().WithMessage("*fan_in_fan_out*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"peft_type":"LORA","lora_alpha":8}""", "x/adapter_config.json"))
            .Should().Throw<InvalidDataException>().WithMessage("x/adapter_config.json: 'r' is missing*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":8,"lora_alpha":"8"}"""))
            .Should().Throw<InvalidDataException>().WithMessage("*'lora_alpha' must be a number*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"r":8}"""))
            .Should().Throw<InvalidDataException>().WithMessage("*'peft_type' is missing*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("{"))
            .Should().Throw<InvalidDataException>().WithMessage("*not valid JSON*");
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":0,"lora_alpha":8}"""))
            .Should().Throw<InvalidDataException>().WithMessage("adapter_config.json: 'r' is invalid: *LoraOptions.R*");
        FluentActions.Invoking(() => PeftAdapter.ReadConfig(_dir)).Should().Throw<FileNotFoundException>().WithMessage("*adapter_config.json*");
    }

    /// <summary>An adapter_config.json shaped like PEFT 0.21's (the real one is tests/fixtures/peft/peft_adapter), plus a key from the future.</summary>
    internal const string Peft021Config = """
    {
      "alora_invocation_tokens": null,
      "alpha_pattern": {},
      "arrow_config": null,
      "auto_mapping": null,
      "base_model_name_or_path": "tests/fixtures/hf/gqa4_window",
      "bias": "none",
      "corda_config": null,
      "ensure_weight_tying": false,
      "eva_config": null,
      "exclude_modules": null,
      "fan_in_fan_out": false,
      "inference_mode": true,
      "init_lora_weights": false,
      "layer_replication": null,
      "layers_pattern": null,
      "layers_to_transform": null,
      "loftq_config": {},
      "lora_alpha": 8,
      "lora_bias": false,
      "lora_dropout": 0.0,
      "lora_ga_config": null,
      "megatron_config": null,
      "megatron_core": "megatron.core",
      "modules_to_save": null,
      "peft_type": "LORA",
      "peft_version": "0.21.0",
      "qalora_group_size": 16,
      "r": 4,
      "rank_pattern": {},
      "revision": null,
      "target_modules": [
        "v_proj",
        "gate_proj",
        "q_proj",
        "o_proj",
        "down_proj",
        "up_proj",
        "k_proj"
      ],
      "target_parameters": null,
      "task_type": "CAUSAL_LM",
      "trainable_token_indices": null,
      "use_dora": false,
      "use_qalora": false,
      "use_rslora": false,
      "some_future_option": {"x": 1}
    }
    """;

    [Fact]
    public void AcceptsAConfigWrittenByPeft021AndWarnsAboutUnknownKeysOnly()
    {
        var logger = new ListLogger();
        var config = PeftAdapterConfig.Parse(Peft021Config, "adapter_config.json", logger);
        config.R.Should().Be(4);
        config.LoraAlpha.Should().Be(8);
        config.InitLoraWeights.Should().Be(LoraInit.LinearDefault);
        config.TargetModules.Should().BeEquivalentTo(LoraOptions.AllProjections);
        logger.Entries.Should().ContainSingle(e => e.Level == LogLevel.Warning).Which.Message.Should().Contain("some_future_option");

        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, config.ToLoraOptions());
        lora.Layers.Should().HaveCount(14);
    }

    [Fact]
    public void StringTargetModulesIsARegexFullMatchAndRoundTrips()
    {
        var config = PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":".*\\.(q|v)_proj"}""");
        config.TargetModulesPattern.Should().Be(@".*\.(q|v)_proj");
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, config.ToLoraOptions());
        lora.Layers.Should().HaveCount(4);
        PeftAdapter.Save(lora, _dir);
        var again = PeftAdapter.ReadConfig(_dir);
        again.TargetModulesPattern.Should().Be(@".*\.(q|v)_proj");
        again.TargetModules.Should().BeNull();
        File.ReadAllText(Path.Combine(_dir, "adapter_config.json")).Should().Contain("\"target_modules\": \".*\\\\.(q|v)_proj\"");
    }

    [Fact]
    public void RsLoraAndGaussianAreRecorded()
    {
        using var model = TinyModels.RandomModel();
        var lora = LoraInjector.Inject(model, new LoraOptions { R = 16, Alpha = 8, UseRsLora = true, Init = LoraInit.Gaussian });
        lora.Layers.Values.First().Scaling.Should().Be(2.0);
        PeftAdapter.Save(lora, _dir);
        var config = PeftAdapter.ReadConfig(_dir);
        config.UseRsLora.Should().BeTrue();
        config.InitLoraWeights.Should().Be(LoraInit.Gaussian);
        config.ToLoraOptions().Scaling.Should().Be(2.0);
    }
}
