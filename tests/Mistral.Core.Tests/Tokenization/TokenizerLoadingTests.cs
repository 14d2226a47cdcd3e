using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

public sealed class TokenizerLoadingTests(TokenizerFixtures fixtures) : IClassFixture<TokenizerFixtures>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mistral-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void FromFolder_reads_tokenizer_model()
    {
        File.Copy(fixtures.ModelPath("mistral"), Path.Combine(_dir, "tokenizer.model"));
        MistralTokenizer tok = MistralTokenizer.FromFolder(_dir);
        tok.Source.Should().Be(Path.Combine(_dir, "tokenizer.model"));
        tok.Encode("Hello, world!").Should().Equal(1, 22557, 28725, 1526, 28808);
    }

    [Fact]
    public void FromModel_reads_a_stream()
    {
        using FileStream fs = File.OpenRead(fixtures.ModelPath("tiny-bpe"));
        MistralTokenizer tok = MistralTokenizer.FromModel(fs, sourceName: "tiny");
        tok.Source.Should().Be("tiny");
        tok.VocabSize.Should().Be(1000);
        tok.Encode("Hello, world!", false, false).Should().Equal(fixtures.Tiny.Encode("Hello, world!", false, false));
    }

    [Fact]
    public void Missing_folder_and_missing_model_name_the_path()
    {
        string missing = Path.Combine(_dir, "nope");
        FluentActions.Invoking(() => MistralTokenizer.FromFolder(missing))
            .Should().Throw<DirectoryNotFoundException>().WithMessage($"*{missing}*");
        FluentActions.Invoking(() => MistralTokenizer.FromFolder(_dir))
            .Should().Throw<FileNotFoundException>().WithMessage($"*{Path.Combine(_dir, "tokenizer.model")}*")
            .Which.FileName.Should().Be(Path.Combine(_dir, "tokenizer.model"));
    }

    [Theory]
    [InlineData("text")]
    [InlineData("empty")]
    [InlineData("truncated")]
    [InlineData("random")]
    public void Corrupt_model_files_raise_InvalidDataException_naming_the_path(string kind)
    {
        byte[] good = File.ReadAllBytes(fixtures.ModelPath("tiny-bpe"));
        byte[] bytes = kind switch
        {
            "text" => "this is not a protobuf\n"u8.ToArray(),
            "empty" => [],
            "truncated" => good[..(good.Length / 2)],
            _ => Enumerable.Range(0, 4096).Select(i => (byte)((i * 7919) ^ (i >> 3))).ToArray(),
        };
        string path = Path.Combine(_dir, "tokenizer.model");
        File.WriteAllBytes(path, bytes);
        FluentActions.Invoking(() => MistralTokenizer.FromFolder(_dir))
            .Should().Throw<InvalidDataException>().WithMessage($"*{path}*");
    }

    [Fact]
    public void A_unigram_model_is_rejected_naming_the_field()
    {
        // ModelProto { pieces: [<unk> UNKNOWN], trainer_spec { model_type: UNIGRAM } }
        byte[] piece = [0x0A, 5, .. "<unk>"u8, 0x18, 2];
        byte[] proto = [0x0A, (byte)piece.Length, .. piece, 0x12, 2, 0x18, 1];
        string path = Path.Combine(_dir, "unigram.model");
        File.WriteAllBytes(path, proto);
        FluentActions.Invoking(() => MistralTokenizer.FromFile(path))
            .Should().Throw<InvalidDataException>().WithMessage($"*{path}*trainer_spec.model_type is 1*");
    }

    [Fact]
    public void Missing_file_is_named()
    {
        string path = Path.Combine(_dir, "absent.model");
        FluentActions.Invoking(() => MistralTokenizer.FromFile(path)).Should().Throw<FileNotFoundException>().WithMessage($"*{path}*");
    }
}
