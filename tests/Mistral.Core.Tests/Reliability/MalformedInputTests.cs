using System.Text;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests.Reliability;

/// <summary>Issue 11 §2/§4: malformed configs and safetensors headers fail with the library's error naming file and field.</summary>
public class MalformedInputTests
{
    private const string ValidConfig = """
        {"vocab_size": 97, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 1, "head_dim": 8, "rms_norm_eps": 1e-5, "rope_theta": 10000.0 %EXTRA%}
        """;

    private static string Config(string extra) => ValidConfig.Replace("%EXTRA%", extra, StringComparison.Ordinal);

    [Theory]
    [InlineData(", \"rope_scaling\": \"linear\"", "rope_scaling")]
    [InlineData(", \"rope_scaling\": [\"linear\", 2.0]", "rope_scaling")]
    [InlineData(", \"rope_parameters\": \"yarn\"", "rope_parameters")]
    public void RopeScalingThatIsNotAnObjectIsRejected(string extra, string key)
    {
        FluentActions.Invoking(() => MistralConfig.FromJson(Config(extra), "cfg/config.json"))
            .Should().Throw<InvalidDataException>().WithMessage($"cfg/config.json: '{key}'*not supported*");
        MistralConfig.FromJson(Config(", \"rope_scaling\": null"), "cfg/config.json").HiddenSize.Should().Be(32);
    }

    [Fact]
    public void DuplicateConfigKeyNamesFileAndKey()
    {
        FluentActions.Invoking(() => MistralConfig.FromJson(Config(", \"hidden_size\": 64"), "cfg/config.json"))
            .Should().Throw<InvalidDataException>().WithMessage("cfg/config.json: key 'hidden_size' appears more than once.");
        FluentActions.Invoking(() => MistralConfig.FromJson(Config(", \"rope_parameters\": {\"rope_theta\": 1, \"rope_theta\": 2}"), "cfg/config.json"))
            .Should().Throw<InvalidDataException>().WithMessage("*'rope_parameters.rope_theta' appears more than once*");
    }

    [Fact]
    public void LoneSurrogateInConfigStringNamesTheFile()
    {
        FluentActions.Invoking(() => MistralConfig.FromJson(Config(", \"hidden_act\": \"\\ud800\""), "cfg/config.json"))
            .Should().Throw<InvalidDataException>().WithMessage("cfg/config.json:*");
    }

    [Fact]
    public void WriterRejectsATensorNamedMetadata()
    {
        string path = Path.Combine(TestPaths.TempDir(), "m.safetensors");
        using Tensor t = ones(2);
        FluentActions.Invoking(() => SafeTensorsWriter.Write(path, new Dictionary<string, Tensor> { ["__metadata__"] = t }))
            .Should().Throw<ArgumentException>().WithMessage("*'__metadata__'*");
        File.Exists(path).Should().BeFalse();
    }

    [Theory]
    [InlineData("[\"0\", \"8\"]")]
    [InlineData("[null, null]")]
    [InlineData("[0, \"8\"]")]
    [InlineData("{\"a\": 1}")]
    public void DataOffsetsOfWrongTypesNameFileAndTensor(string offsets)
    {
        string path = WriteRaw(Encoding.UTF8.GetBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" + offsets + "}}"), 8);
        FluentActions.Invoking(() => SafeTensorsFile.Open(path))
            .Should().Throw<InvalidDataException>().WithMessage($"{path}: tensor 'w': 'data_offsets' must be [begin, end]*");
    }

    [Fact]
    public void InvalidUtf8InATensorNameNamesTheFile()
    {
        byte[] header = [.. "{\"ok\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b"u8, 0xFF, 0xFE, .. "d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"u8];
        string path = WriteRaw(header, 8);
        FluentActions.Invoking(() => SafeTensorsFile.Open(path))
            .Should().Throw<InvalidDataException>().WithMessage($"{path}: *entry #1 (after tensor 'ok')*");
    }

    [Fact]
    public void LoneSurrogateInATensorNameNamesTheFile()
    {
        string path = WriteRaw("{\"\\ud800x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"u8.ToArray(), 4);
        FluentActions.Invoking(() => SafeTensorsFile.Open(path))
            .Should().Throw<InvalidDataException>().WithMessage($"{path}: *entry #0*");
    }

    [Fact]
    public void LoneSurrogateInADtypeNamesFileAndTensor()
    {
        string path = WriteRaw("{\"w\":{\"dtype\":\"\\udc00\",\"shape\":[1],\"data_offsets\":[0,4]}}"u8.ToArray(), 4);
        FluentActions.Invoking(() => SafeTensorsFile.Open(path))
            .Should().Throw<InvalidDataException>().WithMessage($"{path}: tensor 'w'*");
    }

    [Fact]
    public void LoneSurrogateInAShardIndexNamesTheIndex()
    {
        string dir = TestPaths.TempDir();
        using (Tensor t = ones(1))
        {
            SafeTensorsWriter.Write(Path.Combine(dir, "a.safetensors"), new Dictionary<string, Tensor> { ["w"] = t });
        }

        string index = Path.Combine(dir, CheckpointReader.IndexFileName);
        File.WriteAllText(index, "{\"weight_map\": {\"\\ud800\": \"a.safetensors\"}}");
        FluentActions.Invoking(() => CheckpointReader.Open(dir)).Should().Throw<InvalidDataException>().WithMessage($"{index}: *");
    }

    internal static string WriteRaw(byte[] header, int dataBytes)
    {
        string path = Path.Combine(TestPaths.TempDir(), "model.safetensors");
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((long)header.Length));
        fs.Write(header);
        fs.Write(new byte[dataBytes]);
        return path;
    }
}
