using Mistral.Peft.Lora;
using static TorchSharp.torch;

namespace Mistral.Peft.Tests.Lora;

public class LoraOptionsTests
{
    [Fact]
    public void DefaultsArePeftsAndPresetsAreTheStudys()
    {
        var d = new LoraOptions().Validate();
        d.R.Should().Be(8);
        d.Alpha.Should().Be(8);
        d.Dropout.Should().Be(0);
        d.EffectiveTargetModules.Should().Equal("q_proj", "v_proj");
        d.AdapterDtype.Should().Be(ScalarType.Float32);
        d.Init.Should().Be(LoraInit.KaimingUniform);
        d.Scaling.Should().Be(1.0);

        var c = LoraOptions.Preset("Classification");
        (c.R, c.Alpha, c.Dropout, c.Scaling).Should().Be((8, 16.0, 0.1, 2.0));
        c.TargetModules.Should().Equal("q_proj", "v_proj");
        var s = LoraOptions.Preset("summarization");
        (s.R, s.Alpha, s.Dropout, s.Scaling).Should().Be((64, 16.0, 0.1, 0.25));
        s.TargetModules.Should().Equal("q_proj", "v_proj");
        FluentActions.Invoking(() => LoraOptions.Preset("translation")).Should().Throw<ArgumentException>().WithMessage("*translation*classification*summarization*");
    }

    [Fact]
    public void RsLoraScalesByAlphaOverSquareRootOfR()
    {
        new LoraOptions { R = 64, Alpha = 16, UseRsLora = true }.Scaling.Should().Be(2.0);
        new LoraOptions { R = 64, Alpha = 16 }.Scaling.Should().Be(0.25);
    }

    public static TheoryData<LoraOptions, string> Invalid => new()
    {
        { new LoraOptions { R = 0 }, "*LoraOptions.R*at least 1*0*" },
        { new LoraOptions { Alpha = 0 }, "*LoraOptions.Alpha*positive*" },
        { new LoraOptions { Alpha = double.NaN }, "*LoraOptions.Alpha*" },
        { new LoraOptions { Dropout = 1.0 }, "*LoraOptions.Dropout*[0, 1)*" },
        { new LoraOptions { Dropout = -0.1 }, "*LoraOptions.Dropout*" },
        { new LoraOptions { TargetModules = [] }, "*LoraOptions.TargetModules*empty*" },
        { new LoraOptions { TargetModules = ["q_proj", ""] }, "*LoraOptions.TargetModules*empty names*" },
        { new LoraOptions { TargetModules = ["all-linear", "q_proj"] }, "*'all-linear' must be the only entry*" },
        { new LoraOptions { TargetModules = ["q_proj"], TargetModulesPattern = ".*q_proj" }, "*TargetModules and*TargetModulesPattern*mutually exclusive*" },
        { new LoraOptions { TargetModulesPattern = "(unclosed" }, "*LoraOptions.TargetModulesPattern*not a valid regular expression*" },
        { new LoraOptions { Bias = "all" }, "*LoraOptions.Bias*\"none\"*\"all\"*" },
        { new LoraOptions { AdapterDtype = ScalarType.Int32 }, "*LoraOptions.AdapterDtype*Int32*" },
        { new LoraOptions { Init = (LoraInit)42 }, "*LoraOptions.Init*" },
        { new LoraOptions { ExcludeModules = [" "] }, "*LoraOptions.ExcludeModules*" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void ValidationNamesTheOption(LoraOptions options, string message)
    {
        FluentActions.Invoking(() => options.Validate()).Should().Throw<ArgumentException>().WithMessage(message);
    }
}
