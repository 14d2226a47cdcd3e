using Microsoft.Extensions.AI;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using Mistral.Extensions.AI;
using static TorchSharp.torch;

// Usage: Consumer <model folder>. Prints the token count of a fixed text, then a 5-token reply through IChatClient.
string folder = args.Length == 1 ? args[0] : throw new ArgumentException("usage: Consumer <model folder>");
var tokenizer = MistralTokenizer.FromFolder(folder);
const string Text = "Python library for manipulating the Python language";
Console.WriteLine($"tokens: {tokenizer.CountTokens(Text)}");

using var model = new MistralForCausalLM(MistralConfig.FromFile(Path.Combine(folder, "config.json")), ScalarType.Float32, CPU);
CheckpointLoader.Load(model, folder);
using IChatClient client = new MistralChatClient(model, tokenizer);
ChatResponse reply = await client.GetResponseAsync("Python library for", new ChatOptions { MaxOutputTokens = 5 });
Console.WriteLine($"reply: {reply.Text.Trim()} ({reply.Usage?.OutputTokenCount} tokens, {reply.FinishReason})");
Console.WriteLine($"pipeline: {typeof(Mistral.Pipeline.MistralPipeline).Assembly.GetName().Name}, eval: {typeof(Mistral.Eval.Metrics.ClassificationMetrics).Assembly.GetName().Name}");
