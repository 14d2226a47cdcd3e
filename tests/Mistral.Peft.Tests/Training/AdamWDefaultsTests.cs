using TorchSharp;
using TorchSharp.Modules;

namespace Mistral.Peft.Tests.Training;

/// <summary>What README.md and LoraTrainingOptions say about TorchSharp's AdamW defaults.</summary>
public class AdamWDefaultsTests
{
    [Fact]
    public void TorchSharpsAdamWDefaultWeightDecayIsZeroUnlikePyTorchs()
    {
        // One step with a zero gradient: Adam's update is 0, so only the decoupled decay moves p: p ← p·(1 − lr·wd).
        static float StepOnce(Func<Parameter, torch.optim.Optimizer> make)
        {
            using var p = new Parameter(torch.ones(3));
            using var optimizer = make(p);
            p.grad = torch.zeros(3);
            optimizer.step();
            return p[0].item<float>();
        }

        StepOnce(p => torch.optim.AdamW([p], lr: 0.1)).Should().Be(1f, "TorchSharp 0.107's default weight decay is 0");
        StepOnce(p => torch.optim.AdamW([p], lr: 0.1, weight_decay: 0.01)).Should().Be(1f - (0.1f * 0.01f), "PyTorch's default, passed explicitly");
    }
}
