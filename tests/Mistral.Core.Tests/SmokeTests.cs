using TorchSharp;
namespace Mistral.Core.Tests;
public class SmokeTests
{
    [Fact]
    public void TorchLoads()
    {
        using var t = torch.ones(2, 2);
        t.sum().item<float>().Should().Be(4f);
    }
}
