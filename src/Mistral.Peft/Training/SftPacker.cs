using Mistral.Core.Tokenization;

namespace Mistral.Peft.Training;

/// <summary>
/// Packs tokenized texts into fixed-length training blocks the way the study's TRL <c>SFTTrainer(packing=True)</c> did
/// (TRL's <c>ConstantLengthDataset</c>): each text's ids (BOS first when <see cref="SftPackingOptions.PrependBos"/>),
/// then EOS (<see cref="SftPackingOptions.AppendEos"/>), all texts concatenated in order into one stream, and the stream
/// cut into consecutive blocks of <see cref="SftPackingOptions.SequenceLength"/> tokens. A text may span two blocks.
/// The final incomplete block is dropped and counted in <see cref="PackedDataset.DroppedTokens"/>. Labels are the
/// input ids: the loss is on every token, prompt included.
/// </summary>
/// <remarks>
/// TRL fills a character buffer of many texts at a time and cuts each buffer separately, dropping a tail per buffer, and
/// shuffles the blocks of a buffer with Python's <c>random</c>; here the whole input is one stream (one tail dropped) and
/// the blocks keep stream order (<see cref="LoraTrainer"/> shuffles them per epoch).
/// </remarks>
public sealed class SftPacker
{
    /// <summary>Creates a packer.</summary>
    /// <param name="options">Packing options (validated here); null for <see cref="SftPackingOptions.Study"/>.</param>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public SftPacker(SftPackingOptions? options = null)
    {
        Options = (options ?? SftPackingOptions.Study).Validate();
    }

    /// <summary>The options in use.</summary>
    public SftPackingOptions Options { get; }

    /// <summary>Packs already-tokenized texts (without BOS/EOS unless the options say not to add them).</summary>
    /// <param name="texts">Each text's token ids, in order.</param>
    /// <param name="cancellationToken">Checked between texts.</param>
    /// <returns>The blocks, the number of texts and the number of trailing tokens dropped.</returns>
    /// <exception cref="ArgumentException">A text is null or holds a negative id; the message gives its index.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public PackedDataset Pack(IEnumerable<IReadOnlyList<int>> texts, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var stream = new List<int>();
        int textCount = 0;
        foreach (var ids in texts)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (ids is null)
            {
                throw new ArgumentException($"texts[{textCount}] is null.", nameof(texts));
            }

            if (Options.PrependBos)
            {
                stream.Add(Options.BosId);
            }

            for (int i = 0; i < ids.Count; i++)
            {
                if (ids[i] < 0)
                {
                    throw new ArgumentException($"texts[{textCount}][{i}] is a negative token id ({ids[i]}).", nameof(texts));
                }

                stream.Add(ids[i]);
            }

            if (Options.AppendEos)
            {
                stream.Add(Options.EosId);
            }

            textCount++;
        }

        int length = Options.SequenceLength;
        int kept = stream.Count / length * length;
        int[] tokens = new int[kept];
        stream.CopyTo(0, tokens, 0, kept);
        return new PackedDataset(tokens, length, textCount, stream.Count - kept);
    }

    /// <summary>
    /// Tokenizes texts (content only: BOS and EOS come from the options, with the tokenizer's ids) and packs them.
    /// </summary>
    /// <param name="texts">The texts, in order (e.g. prompts already rendered with their answers).</param>
    /// <param name="tokenizer">The tokenizer; its <see cref="MistralTokenizer.BosId"/>/<see cref="MistralTokenizer.EosId"/>
    /// replace <see cref="SftPackingOptions.BosId"/>/<see cref="SftPackingOptions.EosId"/>.</param>
    /// <param name="cancellationToken">Checked between texts.</param>
    /// <returns>The packed dataset.</returns>
    /// <exception cref="ArgumentException">A text is null, or the tokenizer lacks a BOS/EOS the options need.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public PackedDataset Pack(IEnumerable<string> texts, MistralTokenizer tokenizer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var packer = new SftPacker(Options with { BosId = tokenizer.BosId, EosId = tokenizer.EosId });
        return packer.Pack(Tokenize(texts, tokenizer), cancellationToken);
    }

    private static IEnumerable<IReadOnlyList<int>> Tokenize(IEnumerable<string> texts, MistralTokenizer tokenizer)
    {
        int index = 0;
        foreach (string text in texts)
        {
            if (text is null)
            {
                throw new ArgumentException($"texts[{index}] is null.", nameof(texts));
            }

            yield return tokenizer.Encode(text, addBeginningOfSentence: false, addEndOfSentence: false);
            index++;
        }
    }
}
