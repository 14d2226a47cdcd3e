using System.Text.Json;
using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

/// <summary>Locates tests/fixtures/tokenizer and reads the cases made by tools/tokenizer/make_fixtures.py.</summary>
public sealed class TokenizerFixtures
{
    public TokenizerFixtures()
    {
        Directory = FindDirectory();
        Tiny = MistralTokenizer.FromFile(ModelPath("tiny-bpe"));
        TinyWithUserDefined = MistralTokenizer.FromFile(ModelPath("tiny-bpe-udf"));
        Mistral = MistralTokenizer.FromFile(ModelPath("mistral"));
    }

    public string Directory { get; }

    public MistralTokenizer Tiny { get; }

    /// <summary>spm_train model with user-defined pieces (&lt;|im_start|&gt;, ###, @@) and control pieces [INST], [/INST].</summary>
    public MistralTokenizer TinyWithUserDefined { get; }

    public MistralTokenizer Mistral { get; }

    public MistralTokenizer ByName(string name) => name switch
    {
        "tiny-bpe" => Tiny,
        "tiny-bpe-udf" => TinyWithUserDefined,
        _ => Mistral,
    };

    public string ModelPath(string name) =>
        Path.Combine(Directory, name == "mistral" ? "mistral-7b-v0.1.model" : name + ".model");

    public IReadOnlyList<EncodeCase> EncodeCases(string name) =>
        Read(Path.Combine(Directory, $"{name}.cases.json"), e => new EncodeCase(
            e.GetProperty("text").GetString()!,
            Ints(e.GetProperty("ids")),
            e.GetProperty("pieces").EnumerateArray().Select(p => p.GetString()!).ToArray(),
            e.GetProperty("decoded").GetString()!));

    public IReadOnlyList<DecodeCase> DecodeCases(string name) =>
        Read(Path.Combine(Directory, $"{name}.decode.json"), e => new DecodeCase(
            Ints(e.GetProperty("ids")),
            e.GetProperty("pieces").EnumerateArray().Select(p => p.GetString()!).ToArray(),
            e.GetProperty("decoded").GetString()!));

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private static List<T> Read<T>(string path, Func<JsonElement, T> map)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.EnumerateArray().Select(map).ToList();
    }

    private static string FindDirectory()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures", "tokenizer");
            if (System.IO.Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new DirectoryNotFoundException($"tests/fixtures/tokenizer not found above {AppContext.BaseDirectory}");
    }
}

public sealed record EncodeCase(string Text, int[] Ids, string[] Pieces, string Decoded);

public sealed record DecodeCase(int[] Ids, string[] Pieces, string Decoded);
