using System.Diagnostics;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;

namespace Mistral.Peft.Tests.Reliability;

/// <summary>Issue 11 §3/§4: adapter_config.json values and target_modules patterns fail fast, naming the file and key.</summary>
public class LoraConfigReliabilityTests
{
    private const string Pathological = @"((\w+)*\.?)*Z";

    [Fact]
    public void CatastrophicTargetModulesPatternInAConfigFailsWithinSecondsNamingFileKeyAndPattern()
    {
        string json = """{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":"((\\w+)*\\.?)*Z"}""";
        var clock = Stopwatch.StartNew();
        FluentActions.Invoking(() => PeftAdapterConfig.Parse(json, "a/adapter_config.json"))
            .Should().Throw<InvalidDataException>()
            .WithMessage($"a/adapter_config.json: 'target_modules' is invalid: *'{Pathological}' took longer than 1 s*");
        clock.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public void CatastrophicPatternInOptionsFailsInjectionNamingThePattern()
    {
        using var model = TinyModels.RandomModel();
        var clock = Stopwatch.StartNew();
        FluentActions.Invoking(() => LoraInjector.Inject(model, new LoraOptions { TargetModulesPattern = Pathological }))
            .Should().Throw<ArgumentException>().WithMessage($"*'{Pathological}' took longer than*");
        clock.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(20));
    }

    [Theory]
    [InlineData("\"r\":0,\"lora_alpha\":8", "r")]
    [InlineData("\"r\":8,\"lora_alpha\":-1", "lora_alpha")]
    [InlineData("\"r\":8,\"lora_alpha\":8,\"lora_dropout\":1.5", "lora_dropout")]
    [InlineData("\"r\":8,\"lora_alpha\":8,\"target_modules\":[]", "target_modules")]
    [InlineData("\"r\":8,\"lora_alpha\":8,\"target_modules\":\"(unclosed\"", "target_modules")]
    [InlineData("\"r\":8,\"lora_alpha\":8,\"exclude_modules\":[\"\"]", "exclude_modules")]
    public void OutOfRangeValuesNameFileAndKey(string fields, string key)
    {
        FluentActions.Invoking(() => PeftAdapterConfig.Parse("{\"peft_type\":\"LORA\"," + fields + "}", "a/adapter_config.json"))
            .Should().Throw<InvalidDataException>().WithMessage($"a/adapter_config.json: '{key}' is invalid: *");
    }

    [Fact]
    public void OrdinaryPatternsStillMatch()
    {
        TargetModuleMatcher.FullMatch("model.layers.0.self_attn.q_proj", @".*\.(q|v)_proj").Should().BeTrue();
        TargetModuleMatcher.FullMatch("model.layers.0.mlp.up_proj", @".*\.(q|v)_proj").Should().BeFalse();
        PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":".*\\.(q|v)_proj"}""")
            .TargetModulesPattern.Should().Be(@".*\.(q|v)_proj");
    }
}
