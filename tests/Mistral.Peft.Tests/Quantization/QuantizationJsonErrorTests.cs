using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mistral.Peft.Quantization;
using Mistral.Peft.Tests.QuantizedModel;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Quantization;

/// <summary>A JSON value of the wrong type is an InvalidDataException naming the key and the expected type, never a JsonElement exception.</summary>
public class QuantizationJsonErrorTests
{
    private const string StateKey = "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4";

    private const string GoodState =
        """{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.0123}""";

    private static string Edit(string json, string field, string rawValue)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        node[field] = JsonNode.Parse(rawValue);
        return node.ToJsonString();
    }

    [Fact]
    public void TheGoodStateParses()
    {
        var meta = QuantStateMetadata.Parse(GoodState, StateKey);
        meta.BlockSize.Should().Be(64);
        meta.Shape.Should().Equal(64L, 64L);
        meta.NestedBlockSize.Should().Be(256);
        meta.NestedOffset.Should().Be(0.0123f);
    }

    [Theory]
    [InlineData("quant_type", "4", "a string")]
    [InlineData("blocksize", "\"64\"", "an integer")]
    [InlineData("blocksize", "64.5", "an integer")]
    [InlineData("dtype", "null", "a string")]
    [InlineData("shape", "\"64x64\"", "a list of positive integers")]
    [InlineData("shape", "[64, \"64\"]", "a list of positive integers")]
    [InlineData("nested_blocksize", "true", "an integer")]
    [InlineData("nested_offset", "\"0.01\"", "a number")]
    [InlineData("nested_dtype", "[]", "a string")]
    public void AQuantStateFieldOfTheWrongTypeIsNamedWithTheExpectedType(string field, string raw, string expected)
    {
        FluentActions.Invoking(() => QuantStateMetadata.Parse(Edit(GoodState, field, raw), StateKey, "/models/x"))
            .Should().Throw<InvalidDataException>()
            .WithMessage($"/models/x: '{StateKey}': \"{field}\" must be {expected}; got {raw.Replace(" ", string.Empty, StringComparison.Ordinal)}*");
    }

    [Fact]
    public void AQuantStateThatIsNotAnObjectIsNamed()
    {
        FluentActions.Invoking(() => QuantStateMetadata.Parse("[1, 2]", StateKey))
            .Should().Throw<InvalidDataException>().WithMessage($"'{StateKey}' must hold a JSON object; got Array.");
    }

    [Fact]
    public void FromBitsAndBytesStateReportsAWronglyTypedFieldNamingTheKey()
    {
        using var scope = NewDisposeScope();
        using var layer = Linear4bit.FromLinear(randn(16, 64, generator: new Generator(2)));
        var state = new Dictionary<string, Tensor>(layer.ToBitsAndBytesState("p"));
        state["p.weight.quant_state.bitsandbytes__nf4"] = tensor(Encoding.UTF8.GetBytes(Edit(GoodState, "blocksize", "\"64\"")), ScalarType.Byte);
        FluentActions.Invoking(() => Nf4Tensor.FromBitsAndBytesState(state, "p"))
            .Should().Throw<InvalidDataException>().WithMessage("'p.weight.quant_state.bitsandbytes__nf4': \"blocksize\" must be an integer; got \"64\".");
    }

    private const string GoodConfig =
        """{"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true, "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8", "llm_int8_skip_modules": ["lm_head"]}""";

    [Theory]
    [InlineData("quant_method", "1", "a string")]
    [InlineData("load_in_4bit", "\"true\"", "true or false")]
    [InlineData("_load_in_4bit", "1", "true or false")]
    [InlineData("bnb_4bit_quant_type", "{}", "a string")]
    [InlineData("bnb_4bit_quant_storage", "8", "a string")]
    [InlineData("bnb_4bit_use_double_quant", "\"yes\"", "true or false")]
    [InlineData("bnb_4bit_compute_dtype", "16", "a string")]
    [InlineData("llm_int8_skip_modules", "\"lm_head\"", "a list of strings or null")]
    [InlineData("llm_int8_skip_modules", "[\"lm_head\", 3]", "a list of strings or null")]
    public void AQuantizationConfigKeyOfTheWrongTypeIsNamedWithTheExpectedType(string field, string raw, string expected)
    {
        using var doc = JsonDocument.Parse(Edit(GoodConfig, field, raw));
        FluentActions.Invoking(() => QuantizationConfig.FromJson(doc.RootElement))
            .Should().Throw<InvalidDataException>()
            .WithMessage($"quantization_config.{field} must be {expected}; got {raw.Replace(" ", string.Empty, StringComparison.Ordinal)}*");
    }

    [Fact]
    public void NullOptionalKeysTakeTheDefaultsAndTheGoodConfigParses()
    {
        using var good = JsonDocument.Parse(GoodConfig);
        var config = QuantizationConfig.FromJson(good.RootElement);
        config.UseDoubleQuant.Should().BeTrue();
        config.ComputeDtype.Should().Be(ScalarType.BFloat16);
        config.SkipModules.Should().Equal("lm_head");
        using var nulls = JsonDocument.Parse(Edit(Edit(Edit(GoodConfig, "bnb_4bit_compute_dtype", "null"), "llm_int8_skip_modules", "null"), "bnb_4bit_use_double_quant", "null"));
        var defaults = QuantizationConfig.FromJson(nulls.RootElement);
        defaults.UseDoubleQuant.Should().BeFalse();
        defaults.ComputeDtype.Should().Be(ScalarType.Float32);
        defaults.SkipModules.Should().BeNull();
    }

    [Fact]
    public void TheLoaderNamesTheConfigFileAndTheKey()
    {
        string dir = TinyCheckpoints.CopyWithEdits(TinyCheckpoints.Folder(), _ => { }, json =>
        {
            var node = JsonNode.Parse(json)!.AsObject();
            node["quantization_config"] = JsonNode.Parse(Edit(GoodConfig, "bnb_4bit_use_double_quant", "\"yes\""));
            return node.ToJsonString();
        });
        try
        {
            FluentActions.Invoking(() => QuantizedModelLoader.Load(dir)).Should().Throw<InvalidDataException>()
                .WithMessage($"{Path.Combine(dir, "config.json")}: quantization_config.bnb_4bit_use_double_quant must be true or false; got \"yes\".");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
