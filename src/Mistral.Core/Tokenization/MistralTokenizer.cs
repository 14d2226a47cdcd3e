using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.Tokenizers;

namespace Mistral.Core.Tokenization;

/// <summary>
/// Mistral's SentencePiece BPE tokenizer (<c>tokenizer.model</c>), built on Microsoft.ML.Tokenizers'
/// <see cref="LlamaTokenizer"/> and matching the SentencePiece library id for id: encoding with or without
/// BOS/EOS, decoding, streaming decoding, padded batches with attention masks, and truncation.
/// </summary>
/// <remarks>
/// The <see cref="LlamaTokenizer"/> loads the model and normalizes text (dummy-prefix space, spaces to U+2581).
/// The BPE merges are run by this library, because LlamaTokenizer 2.0.1 breaks equal-score ties rightmost-first
/// where SentencePiece goes leftmost-first (different ids for e.g. "aaaaaaaa" or runs of spaces).
/// Instances are immutable and thread-safe; text such as "&lt;s&gt;" inside the input is encoded as plain text,
/// as SentencePiece does. Decoding follows SentencePiece: control tokens are invisible, an unknown id shows as
/// " ⁇ ", and invalid byte sequences give U+FFFD per byte.
/// </remarks>
public sealed class MistralTokenizer
{
    /// <summary>The file name of the SentencePiece model in a Hugging Face checkpoint folder.</summary>
    public const string ModelFileName = "tokenizer.model";

    private readonly SentencePieceModel _model;
    private readonly SentencePieceBpeEncoder _encoder;
    private readonly Dictionary<string, int> _pieceIds;

    private MistralTokenizer(SentencePieceModel model, LlamaTokenizer inner, TokenizerOptions options, string source)
    {
        _model = model;
        Inner = inner;
        Options = options;
        Source = source;
        _encoder = new SentencePieceBpeEncoder(model);
        _pieceIds = new Dictionary<string, int>(model.Pieces.Length, StringComparer.Ordinal);
        for (int i = 0; i < model.Pieces.Length; i++)
        {
            _pieceIds[model.Pieces[i]] = i;
        }

        PadId = options.PadToken switch
        {
            PadTokenPolicy.EndOfSentence => EosId,
            PadTokenPolicy.Custom => options.CustomPadId,
            _ => null,
        };
    }

    /// <summary>The underlying Microsoft.ML.Tokenizers tokenizer (for APIs that take a <see cref="Tokenizer"/>).
    /// Note that its own EncodeToIds can differ from SentencePiece on equal-score merges; this class's Encode does not.</summary>
    public LlamaTokenizer Inner { get; }

    /// <summary>The options this tokenizer was created with.</summary>
    public TokenizerOptions Options { get; }

    /// <summary>Where the model was read from (a path, or the name given for a stream).</summary>
    public string Source { get; }

    /// <summary>The id of <c>&lt;s&gt;</c> (1 for Mistral).</summary>
    public int BosId => _model.BosId;

    /// <summary>The id of <c>&lt;/s&gt;</c> (2 for Mistral).</summary>
    public int EosId => _model.EosId;

    /// <summary>The id of <c>&lt;unk&gt;</c> (0 for Mistral).</summary>
    public int UnknownId => _model.UnknownId;

    /// <summary>The pad id chosen by <see cref="TokenizerOptions.PadToken"/>; null when there is none.</summary>
    public int? PadId { get; }

    /// <summary>The number of pieces (32000 for Mistral-7B-v0.1).</summary>
    public int VocabSize => _model.Pieces.Length;

    /// <summary>Loads <c>tokenizer.model</c> from a checkpoint folder.</summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <param name="options">Tokenizer options; null for the defaults.</param>
    /// <param name="logger">Optional logger.</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">The folder has no tokenizer.model.</exception>
    /// <exception cref="InvalidDataException">The file is not a SentencePiece BPE model.</exception>
    public static MistralTokenizer FromFolder(string folder, TokenizerOptions? options = null, ILogger<MistralTokenizer>? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Tokenizer folder '{folder}' does not exist.");
        }

        string path = Path.Combine(folder, ModelFileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                $"No {ModelFileName} in '{folder}': expected the SentencePiece model at '{path}' (tokenizer.json alone is not supported).", path);
        }

        return FromFile(path, options, logger);
    }

    /// <summary>Loads a SentencePiece model file.</summary>
    /// <param name="path">Path of the <c>.model</c> file.</param>
    /// <param name="options">Tokenizer options; null for the defaults.</param>
    /// <param name="logger">Optional logger.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a SentencePiece BPE model.</exception>
    public static MistralTokenizer FromFile(string path, TokenizerOptions? options = null, ILogger<MistralTokenizer>? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Tokenizer model '{path}' does not exist.", path);
        }

        return Create(File.ReadAllBytes(path), path, options, logger);
    }

    /// <summary>Loads a SentencePiece model from a stream (read to its end; not disposed).</summary>
    /// <param name="model">The serialized <c>ModelProto</c>.</param>
    /// <param name="options">Tokenizer options; null for the defaults.</param>
    /// <param name="sourceName">A name for error messages (e.g. the original path).</param>
    /// <param name="logger">Optional logger.</param>
    /// <exception cref="InvalidDataException">The data is not a SentencePiece BPE model.</exception>
    public static MistralTokenizer FromModel(Stream model, TokenizerOptions? options = null, string sourceName = "stream", ILogger<MistralTokenizer>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var copy = new MemoryStream();
        model.CopyTo(copy);
        return Create(copy.ToArray(), sourceName, options, logger);
    }

    private static MistralTokenizer Create(byte[] bytes, string source, TokenizerOptions? options, ILogger<MistralTokenizer>? logger)
    {
        options ??= new TokenizerOptions();
        options.Validate();
        SentencePieceModel model = SentencePieceModel.Parse(bytes, source);

        LlamaTokenizer inner;
        try
        {
            inner = LlamaTokenizer.Create(new MemoryStream(bytes, writable: false), addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"'{source}' could not be loaded by Microsoft.ML.Tokenizers' LlamaTokenizer: {e.Message}", e);
        }

        if (inner.Vocabulary.Count != model.Pieces.Length || inner.BeginningOfSentenceId != model.BosId
            || inner.EndOfSentenceId != model.EosId || inner.UnknownId != model.UnknownId)
        {
            throw new InvalidDataException(
                $"'{source}': LlamaTokenizer read {inner.Vocabulary.Count} pieces (bos {inner.BeginningOfSentenceId}, eos {inner.EndOfSentenceId}) " +
                $"but the model has {model.Pieces.Length} (bos {model.BosId}, eos {model.EosId}).");
        }

        if (options.CustomPadId is int pad && pad >= model.Pieces.Length)
        {
            throw new ArgumentException(
                $"TokenizerOptions.CustomPadId {pad} is outside the vocabulary of {model.Pieces.Length} pieces.", nameof(options));
        }

        if (model.BosId < 0 && options.AddBeginningOfSentence)
        {
            throw new ArgumentException($"TokenizerOptions.AddBeginningOfSentence is set but '{source}' has no BOS piece.", nameof(options));
        }

        if (model.EosId < 0 && (options.AddEndOfSentence || options.PadToken == PadTokenPolicy.EndOfSentence))
        {
            throw new ArgumentException($"TokenizerOptions use EOS but '{source}' has no EOS piece.", nameof(options));
        }

        (logger ?? (ILogger)NullLogger.Instance).LogDebug(
            "Loaded SentencePiece BPE tokenizer {Source}: {VocabSize} pieces, byte fallback {ByteFallback}, normalizer {Normalizer}",
            source, model.Pieces.Length, model.ByteFallback, model.NormalizerName);
        return new MistralTokenizer(model, inner, options, source);
    }

    /// <summary>Encodes text with the options' BOS/EOS and truncation settings.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The token ids.</returns>
    public int[] Encode(string text) =>
        Encode(text, Options.AddBeginningOfSentence, Options.AddEndOfSentence, Options.Truncation);

    /// <summary>Encodes text, choosing whether BOS/EOS are added and how to truncate.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addBeginningOfSentence">Prepend <see cref="BosId"/>.</param>
    /// <param name="addEndOfSentence">Append <see cref="EosId"/>.</param>
    /// <param name="truncation">Truncation to apply, or null for none.</param>
    /// <returns>The token ids.</returns>
    /// <exception cref="ArgumentException">The truncation length cannot hold the BOS/EOS ids.</exception>
    public int[] Encode(string text, bool addBeginningOfSentence, bool addEndOfSentence, TruncationOptions? truncation = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        truncation?.Validate();
        if ((addBeginningOfSentence && BosId < 0) || (addEndOfSentence && EosId < 0))
        {
            throw new InvalidOperationException($"'{Source}' defines no {(addBeginningOfSentence && BosId < 0 ? "BOS" : "EOS")} piece to add.");
        }

        List<int> content = EncodeContent(text);
        int specials = (addBeginningOfSentence ? 1 : 0) + (addEndOfSentence ? 1 : 0);
        int start = 0, count = content.Count;
        if (truncation is not null)
        {
            if (truncation.MaxLength < specials)
            {
                throw new ArgumentException(
                    $"TruncationOptions.MaxLength {truncation.MaxLength} cannot hold the {specials} BOS/EOS ids added.", nameof(truncation));
            }

            int keep = truncation.MaxLength - specials;
            if (count > keep)
            {
                start = truncation.Side == TruncationSide.Left ? count - keep : 0;
                count = keep;
            }
        }

        var ids = new int[count + specials];
        int o = 0;
        if (addBeginningOfSentence)
        {
            ids[o++] = BosId;
        }

        content.CopyTo(start, ids, o, count);
        o += count;
        if (addEndOfSentence)
        {
            ids[o] = EosId;
        }

        return ids;
    }

    /// <summary>The pieces of <paramref name="text"/> (no BOS/EOS), e.g. "▁Hello", ",", "▁world", "!".</summary>
    /// <param name="text">The text.</param>
    /// <returns>One piece per id.</returns>
    public IReadOnlyList<string> EncodeToPieces(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return EncodeContent(text).Select(id => _model.Pieces[id]).ToArray();
    }

    /// <summary>The number of ids <see cref="Encode(string)"/> gives before truncation (BOS/EOS per the options included).
    /// Use it to detect a prompt that does not fit the context.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The token count.</returns>
    public int CountTokens(string text) =>
        CountTokens(text, Options.AddBeginningOfSentence, Options.AddEndOfSentence);

    /// <summary>The number of ids of <paramref name="text"/> with the given BOS/EOS choice, without truncation.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addBeginningOfSentence">Count a BOS id.</param>
    /// <param name="addEndOfSentence">Count an EOS id.</param>
    /// <returns>The token count.</returns>
    public int CountTokens(string text, bool addBeginningOfSentence, bool addEndOfSentence)
    {
        ArgumentNullException.ThrowIfNull(text);
        return EncodeContent(text).Count + (addBeginningOfSentence ? 1 : 0) + (addEndOfSentence ? 1 : 0);
    }

    /// <summary>Decodes ids to text as SentencePiece does.</summary>
    /// <param name="ids">Token ids.</param>
    /// <param name="skipSpecialTokens">True (default): control tokens are invisible and &lt;unk&gt; shows as " ⁇ "
    /// (SentencePiece's decode). False: they appear as their piece text (&lt;s&gt;, &lt;/s&gt;, &lt;unk&gt;).</param>
    /// <returns>The text.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside the vocabulary.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var decoder = new StreamingDecoder(_model, skipSpecialTokens);
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            decoder.AppendTo(id, sb);
        }

        decoder.FlushTo(sb);
        return sb.ToString();
    }

    /// <summary>A decoder that turns ids into text one at a time; the concatenation of its outputs equals
    /// <see cref="Decode(IEnumerable{int}, bool)"/> of the same ids.</summary>
    /// <param name="skipSpecialTokens">As for <see cref="Decode(IEnumerable{int}, bool)"/>.</param>
    /// <returns>A new decoder.</returns>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new(_model, skipSpecialTokens);

    /// <summary>The piece text of an id, e.g. "▁Hello" or "&lt;0x0A&gt;".</summary>
    /// <param name="id">A token id.</param>
    /// <returns>The piece.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary.</exception>
    public string IdToPiece(int id)
    {
        CheckId(id);
        return _model.Pieces[id];
    }

    /// <summary>The id of a piece, if the vocabulary has it.</summary>
    /// <param name="piece">The piece text.</param>
    /// <param name="id">The id when found.</param>
    /// <returns>Whether the piece exists.</returns>
    public bool TryGetId(string piece, out int id)
    {
        ArgumentNullException.ThrowIfNull(piece);
        return _pieceIds.TryGetValue(piece, out id);
    }

    /// <summary>The type of a piece (normal, control, byte, ...).</summary>
    /// <param name="id">A token id.</param>
    /// <returns>The type.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary.</exception>
    public SentencePieceType GetPieceType(int id)
    {
        CheckId(id);
        return _model.Types[id];
    }

    /// <summary>Encodes and pads a batch with the options' padding and truncation.</summary>
    /// <param name="texts">The texts, one row each.</param>
    /// <returns>The padded batch with its attention mask.</returns>
    /// <exception cref="InvalidOperationException">Rows need padding but no pad token is configured.</exception>
    public BatchEncoding EncodeBatch(IReadOnlyList<string> texts) => EncodeBatch(texts, Options.Padding, Options.Truncation);

    /// <summary>Encodes and pads a batch (BOS/EOS per the options).</summary>
    /// <param name="texts">The texts, one row each.</param>
    /// <param name="padding">How to pad.</param>
    /// <param name="truncation">How to truncate each row first, or null for none.</param>
    /// <returns>The padded batch with its attention mask.</returns>
    /// <exception cref="InvalidOperationException">Rows need padding but no pad token is configured.</exception>
    /// <exception cref="ArgumentException">A text is null, or a row is longer than <see cref="PaddingOptions.MaxLength"/>.</exception>
    public BatchEncoding EncodeBatch(IReadOnlyList<string> texts, PaddingOptions padding, TruncationOptions? truncation = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(padding);
        padding.Validate();
        truncation?.Validate();

        var rows = new int[texts.Count][];
        int longest = 0;
        for (int i = 0; i < texts.Count; i++)
        {
            string text = texts[i] ?? throw new ArgumentException($"texts[{i}] is null.", nameof(texts));
            rows[i] = Encode(text, Options.AddBeginningOfSentence, Options.AddEndOfSentence, truncation);
            longest = Math.Max(longest, rows[i].Length);
        }

        int length = longest;
        if (padding.Strategy == PaddingStrategy.MaxLength)
        {
            int max = padding.MaxLength!.Value;
            for (int i = 0; i < rows.Length; i++)
            {
                if (rows[i].Length > max)
                {
                    throw new ArgumentException(
                        $"texts[{i}] has {rows[i].Length} tokens, more than PaddingOptions.MaxLength {max}; set a TruncationOptions to cut it.",
                        nameof(padding));
                }
            }

            length = max;
        }

        if (padding.PadToMultipleOf is int multiple && length % multiple != 0)
        {
            length += multiple - (length % multiple);
        }

        bool needsPad = rows.Any(r => r.Length < length);
        if (needsPad && PadId is null)
        {
            throw new InvalidOperationException(
                "The batch needs padding but TokenizerOptions.PadToken is None (Mistral's tokenizer has no pad token); " +
                "set PadToken = PadTokenPolicy.EndOfSentence (the study's pad = eos) or Custom.");
        }

        int pad = PadId ?? -1;
        var ids = new int[rows.Length][];
        var mask = new int[rows.Length][];
        var lengths = new int[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            int n = rows[i].Length;
            int offset = padding.Side == PaddingSide.Left ? length - n : 0;
            ids[i] = new int[length];
            mask[i] = new int[length];
            Array.Fill(ids[i], pad);
            rows[i].CopyTo(ids[i], offset);
            Array.Fill(mask[i], 1, offset, n);
            lengths[i] = n;
        }

        return new BatchEncoding(ids, mask, lengths, length, padding.Side, pad);
    }

    private List<int> EncodeContent(string text)
    {
        var ids = new List<int>();
        if (text.Length == 0)
        {
            return ids;
        }

        string normalized = Inner.Normalizer?.Normalize(text) ?? FallbackNormalize(text);
        _encoder.Encode(normalized, ids);
        return ids;
    }

    private string FallbackNormalize(string text)
    {
        string escaped = _model.EscapeWhitespaces ? text.Replace(' ', '\u2581') : text;
        return _model.AddDummyPrefix ? "\u2581" + escaped : escaped;
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)_model.Pieces.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside the vocabulary of {_model.Pieces.Length} pieces.");
        }
    }
}
