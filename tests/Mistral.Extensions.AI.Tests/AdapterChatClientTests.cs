using Microsoft.Extensions.AI;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using static TorchSharp.torch;

namespace Mistral.Extensions.AI.Tests;

/// <summary>A client over the kit model with a PEFT adapter loaded from a folder answers as the adapted model does.</summary>
public sealed class AdapterChatClientTests(KitModelFixture kit) : IClassFixture<KitModelFixture>
{
    private MistralForCausalLM FreshKitModel()
    {
        var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(kit.Folder, "config.json")), ScalarType.Float32, CPU);
        CheckpointLoader.Load(model, kit.Folder);
        model.eval();
        return model;
    }

    [Fact]
    public async Task WithAdapterAnswersAsTheAdaptedModel()
    {
        string dir = Path.Combine(Path.GetTempPath(), "mistral-chat-adapter-" + Guid.NewGuid().ToString("N"));
        try
        {
            using MistralForCausalLM trained = FreshKitModel();
            // Non-zero B (LinearDefault): the adapter changes the model, so the test sees whether it was applied.
            LoraModel lora = LoraInjector.Inject(trained, new LoraOptions { R = 4, Alpha = 64, Init = LoraInit.LinearDefault, Seed = 3 });
            trained.eval();
            PeftAdapter.Save(lora, dir);
            GenerationOptions greedy = GenerationOptions.Greedy with { MaxNewTokens = 12 };
            string adapted = new TextGenerator(trained, kit.Tokenizer).Generate("GNOME", greedy).Sequences[0].Text!;
            string plain = new TextGenerator(kit.Model, kit.Tokenizer).Generate("GNOME", greedy).Sequences[0].Text!;
            adapted.Should().NotBe(plain, "the adapter must make a difference for this test to mean anything");

            using MistralForCausalLM model = FreshKitModel();
            using IChatClient client = MistralChatClient.WithAdapter(model, kit.Tokenizer, dir);
            (await client.GetResponseAsync("GNOME", new ChatOptions { MaxOutputTokens = 12 })).Text.Should().Be(adapted);
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }
}
