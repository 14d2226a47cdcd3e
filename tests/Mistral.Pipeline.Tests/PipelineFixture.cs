using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Eval.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Pipeline.Tests;

/// <summary>
/// A real Hugging Face-layout checkpoint folder made once per test class: a small random Mistral (GQA 4/2, window 512 of
/// 1024 positions) whose vocabulary is the 1000 pieces of the committed SentencePiece model <c>tiny-bpe.model</c>, saved
/// as <c>model.safetensors</c> + <c>config.json</c> + <c>tokenizer.model</c>; and a small labelled task.
/// </summary>
public sealed class PipelineFixture : IDisposable
{
    public PipelineFixture()
    {
        Folder = TestPaths.TempDir();
        Config = new MistralConfig
        {
            VocabSize = 1000,
            HiddenSize = 64,
            IntermediateSize = 128,
            NumHiddenLayers = 2,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            HeadDim = 16,
            SlidingWindow = 512,
            MaxPositionEmbeddings = 1024,
            RmsNormEps = 1e-5,
            RopeTheta = 10000,
            TorchDtype = "float32",
        };
        using (var model = new MistralForCausalLM(Config, ScalarType.Float32, CPU))
        {
            using var gen = new Generator(1234);
            using (no_grad())
            {
                foreach (var (name, p) in model.named_parameters())
                {
                    if (name.Contains("norm"))
                    {
                        p.fill_(1.0f);
                    }
                    else
                    {
                        p.copy_(0.05f * randn(p.shape, ScalarType.Float32, generator: gen));
                    }
                }
            }

            CheckpointLoader.Save(model, Folder);
        }

        File.WriteAllText(Path.Combine(Folder, "config.json"), Config.ToJson());
        File.Copy(TestPaths.FixturePath("tokenizer", "tiny-bpe.model"), Path.Combine(Folder, "tokenizer.model"));
    }

    public string Folder { get; }

    public MistralConfig Config { get; }

    public static readonly string[] Labels = ["sport", "food", "music"];

    private static readonly string[][] Words =
    [
        ["football", "match", "goal", "team", "players", "stadium", "coach", "league"],
        ["pizza", "bread", "soup", "kitchen", "recipe", "cheese", "dinner", "salad"],
        ["guitar", "song", "concert", "band", "piano", "album", "singer", "drums"],
    ];

    private static readonly string[] Fillers = ["the", "a", "we", "saw", "great", "new", "with", "and", "today", "about"];

    /// <summary>Short sentences whose topic words give away the label; labels cycle so every split holds all three.</summary>
    public static IReadOnlyList<Example> Examples(int count, int seed)
    {
        var rng = new Random(seed);
        var list = new List<Example>(count);
        for (int i = 0; i < count; i++)
        {
            int label = i % Labels.Length;
            var words = new List<string>();
            for (int w = 0; w < 5; w++)
            {
                words.Add(w % 2 == 0 ? Words[label][rng.Next(Words[label].Length)] : Fillers[rng.Next(Fillers.Length)]);
            }

            list.Add(new Example(string.Join(' ', words), Labels[label]));
        }

        return list;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
