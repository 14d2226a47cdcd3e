using System.Text;
using System.Text.Json;
using Mistral.Core.Tokenization;

namespace Mistral.Core.Tests.Tokenization;

/// <summary>
/// Exact agreement with the SentencePiece library (python3-sentencepiece 0.1.97, cross-checked with spm_encode)
/// on every string of tools/tokenizer/test_strings.py, for a spm_train model and Mistral-7B-v0.1's model.
/// </summary>
public sealed class SentencePieceParityTests(TokenizerFixtures fixtures) : IClassFixture<TokenizerFixtures>
{
    [Theory]
    [InlineData("tiny-bpe")]
    [InlineData("tiny-bpe-udf")]
    [InlineData("mistral")]
    public void Encode_gives_sentencepiece_ids_and_pieces_for_every_case(string model)
    {
        MistralTokenizer tok = fixtures.ByName(model);
        IReadOnlyList<EncodeCase> cases = fixtures.EncodeCases(model);
        cases.Should().HaveCountGreaterThan(model == "tiny-bpe-udf" ? 150 : 600);

        var failures = new List<string>();
        foreach (EncodeCase c in cases)
        {
            int[] ids = tok.Encode(c.Text, addBeginningOfSentence: false, addEndOfSentence: false);
            if (!ids.SequenceEqual(c.Ids))
            {
                failures.Add($"{JsonSerializer.Serialize(c.Text)}: got [{string.Join(",", ids)}], want [{string.Join(",", c.Ids)}]");
                continue;
            }

            if (!tok.EncodeToPieces(c.Text).SequenceEqual(c.Pieces))
            {
                failures.Add($"{JsonSerializer.Serialize(c.Text)}: pieces differ");
            }

            int[] withSpecials = tok.Encode(c.Text, addBeginningOfSentence: true, addEndOfSentence: true);
            if (!withSpecials.SequenceEqual(new[] { tok.BosId }.Concat(c.Ids).Append(tok.EosId)))
            {
                failures.Add($"{JsonSerializer.Serialize(c.Text)}: BOS/EOS placement wrong");
            }

            if (tok.CountTokens(c.Text, false, false) != c.Ids.Length)
            {
                failures.Add($"{JsonSerializer.Serialize(c.Text)}: CountTokens {tok.CountTokens(c.Text, false, false)} != {c.Ids.Length}");
            }
        }

        failures.Should().BeEmpty();
    }

    [Theory]
    [InlineData("tiny-bpe")]
    [InlineData("tiny-bpe-udf")]
    [InlineData("mistral")]
    public void Decode_and_streaming_decode_equal_sentencepiece_decode_for_every_encode_case(string model)
    {
        MistralTokenizer tok = fixtures.ByName(model);
        var failures = new List<string>();
        foreach (EncodeCase c in fixtures.EncodeCases(model))
        {
            CheckDecode(tok, c.Ids, c.Decoded, failures);
            CheckDecode(tok, new[] { tok.BosId }.Concat(c.Ids).Append(tok.EosId).ToArray(), c.Decoded, failures);
        }

        failures.Should().BeEmpty();
    }

    [Theory]
    [InlineData("tiny-bpe")]
    [InlineData("tiny-bpe-udf")]
    [InlineData("mistral")]
    public void Decode_of_random_id_sequences_equals_sentencepiece_decode(string model)
    {
        // Byte pieces that do and do not form UTF-8, <unk>, <s>, </s> anywhere, pieces with and without U+2581.
        MistralTokenizer tok = fixtures.ByName(model);
        IReadOnlyList<DecodeCase> cases = fixtures.DecodeCases(model);
        cases.Should().HaveCountGreaterThan(100);
        var failures = new List<string>();
        foreach (DecodeCase c in cases)
        {
            CheckDecode(tok, c.Ids, c.Decoded, failures);
            string[] pieces = c.Ids.Select(tok.IdToPiece).ToArray();
            if (!pieces.SequenceEqual(c.Pieces))
            {
                failures.Add($"[{string.Join(",", c.Ids)}]: IdToPiece differs");
            }
        }

        failures.Should().BeEmpty();
    }

    private static void CheckDecode(MistralTokenizer tok, int[] ids, string expected, List<string> failures)
    {
        string decoded = tok.Decode(ids);
        if (decoded != expected)
        {
            failures.Add($"[{string.Join(",", ids)}]: Decode {JsonSerializer.Serialize(decoded)} != {JsonSerializer.Serialize(expected)}");
            return;
        }

        StreamingDecoder stream = tok.CreateStreamingDecoder();
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            string chunk = stream.Append(id);
            if (HasLoneSurrogate(chunk))
            {
                failures.Add($"[{string.Join(",", ids)}]: streaming chunk with half a character");
            }

            sb.Append(chunk);
        }

        sb.Append(stream.Flush());
        if (sb.ToString() != expected)
        {
            failures.Add($"[{string.Join(",", ids)}]: streaming {JsonSerializer.Serialize(sb.ToString())} != {JsonSerializer.Serialize(expected)}");
        }
    }

    private static bool HasLoneSurrogate(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && (i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1])))
            {
                return true;
            }

            if (char.IsLowSurrogate(s[i]) && (i == 0 || !char.IsHighSurrogate(s[i - 1])))
            {
                return true;
            }
        }

        return false;
    }
}
