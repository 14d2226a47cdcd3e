// Loads a Hugging Face Mistral checkpoint folder (default: the tiny random model the parity tests use) and prints the
// next-token logits for a few token ids, then a greedy continuation with its timing.
//   dotnet run --project samples/Mistral.Samples.NextToken [-- <checkpoint folder>]
using Microsoft.Extensions.Logging;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using static TorchSharp.torch;

string folder = args.Length > 0 ? args[0] : FindRepoFile("tests/fixtures/hf/gqa4_window");
using ILoggerFactory logging = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true));

MistralConfig config = MistralConfig.FromFile(Path.Combine(folder, "config.json"));
Console.WriteLine($"{folder}: {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads}, window {config.SlidingWindow?.ToString() ?? "none"}");
using var model = new MistralForCausalLM(config, ScalarType.Float32, CPU);
CheckpointLoader.Load(model, folder, logger: logging.CreateLogger("checkpoint"));
model.eval();

int[] prompt = [1, 17, 42, 99, 7];
using (no_grad())
using (Tensor ids = tensor(prompt.Select(x => (long)x).ToArray(), [1, prompt.Length]))
using (CausalLMOutput output = model.forward(new CausalLMInput(ids)))
{
    Tensor last = output.Logits[0, -1];
    var (values, indices) = last.topk(5);
    Console.WriteLine($"prompt ids [{string.Join(", ", prompt)}] → logits [{string.Join(", ", output.Logits.shape)}]");
    Console.WriteLine("top-5 next tokens: " + string.Join(", ", indices.data<long>().ToArray().Zip(values.data<float>().ToArray(), (i, v) => $"{i} ({v:F4})")));
}

var generator = new TokenGenerator(model, logging.CreateLogger<TokenGenerator>());
GenerationResult result = generator.Generate([prompt], GenerationOptions.Greedy with { MaxNewTokens = 16 });
Console.WriteLine($"greedy continuation: [{string.Join(", ", result.Sequences[0].TokenIds)}]");
Console.WriteLine($"prefill {result.Timing.PrefillMilliseconds:F1} ms, decode {result.Timing.DecodeTokensPerSecond:F0} tokens/s");

static string FindRepoFile(string relative)
{
    for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
    {
        string candidate = Path.Combine(dir, relative);
        if (Directory.Exists(candidate))
        {
            return candidate;
        }
    }

    throw new DirectoryNotFoundException($"'{relative}' not found above {AppContext.BaseDirectory}; pass a checkpoint folder.");
}
