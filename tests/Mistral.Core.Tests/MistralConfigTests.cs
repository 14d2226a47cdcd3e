using Mistral.Core.Configuration;

namespace Mistral.Core.Tests;

public class MistralConfigTests
{
    private const string Mistral7BJson = """
    {
      "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
      "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
      "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
      "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
      "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000
    }
    """;

    [Fact]
    public void ReadsMistral7BConfigFile()
    {
        MistralConfig c = MistralConfig.FromJson(Mistral7BJson);
        c.Should().Be(MistralConfig.Mistral7B);
        c.HeadDim.Should().Be(128);
        c.KeyValueGroups.Should().Be(4);
        c.RmsNormEps.Should().Be(1e-5);
    }

    [Fact]
    public void ReadsRopeThetaFromRopeParametersAndNullWindow()
    {
        string json = Mistral7BJson.Replace("\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"default\"}")
            .Replace("\"sliding_window\": 4096", "\"sliding_window\": null");
        MistralConfig c = MistralConfig.FromJson(json);
        c.RopeTheta.Should().Be(1_000_000.0);
        c.SlidingWindow.Should().BeNull();
    }

    [Fact]
    public void ExplicitHeadDimWins()
    {
        MistralConfig c = MistralConfig.FromJson(Mistral7BJson.Replace("\"hidden_size\": 4096,", "\"hidden_size\": 4096, \"head_dim\": 96,"));
        c.HeadDim.Should().Be(96);
    }

    [Theory]
    [InlineData("\"hidden_size\": 4096,", "", "hidden_size")]
    [InlineData("\"vocab_size\": 32000", "\"other\": 1", "vocab_size")]
    [InlineData("\"rms_norm_eps\": 1e-05,", "", "rms_norm_eps")]
    [InlineData("\"rope_theta\": 10000.0,", "", "rope_theta")]
    [InlineData("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5", "num_key_value_heads")]
    [InlineData("\"hidden_size\": 4096", "\"hidden_size\": \"big\"", "hidden_size")]
    [InlineData("\"sliding_window\": 4096", "\"sliding_window\": 0", "sliding_window")]
    [InlineData("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act")]
    [InlineData("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true", "tie_word_embeddings")]
    [InlineData("\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_theta\": 1e6, \"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_parameters.rope_type")]
    [InlineData("\"rope_theta\": 10000.0", "\"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", "rope_scaling")]
    public void BadConfigNamesTheField(string find, string replace, string field)
    {
        string json = Mistral7BJson.Replace(find, replace);
        json.Should().NotBe(Mistral7BJson);
        Action act = () => MistralConfig.FromJson(json, "my/config.json");
        act.Should().Throw<InvalidDataException>().Which.Message.Should().Contain(field).And.Contain("my/config.json");
    }

    [Fact]
    public void NotJsonIsAClearError()
    {
        Action act = () => MistralConfig.FromJson("{ not json", "x.json");
        act.Should().Throw<InvalidDataException>().WithMessage("x.json: not valid JSON*");
    }

    [Fact]
    public void MissingFileIsFileNotFound()
    {
        Action act = () => MistralConfig.FromFile("/nonexistent/config.json");
        act.Should().Throw<FileNotFoundException>().WithMessage("*nonexistent/config.json*");
    }

    [Fact]
    public void ToJsonRoundTrips()
    {
        MistralConfig c = MistralConfig.Mistral7B with { SlidingWindow = null, RopeTheta = 5e5 };
        MistralConfig.FromJson(c.ToJson()).Should().Be(c);
    }
}
