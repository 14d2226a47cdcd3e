namespace Mistral.Core.Tokenization;

/// <summary>
/// The parts of a SentencePiece <c>ModelProto</c> (<c>tokenizer.model</c>) that encoding and decoding need:
/// pieces with scores and types, the trainer settings and the normalizer flags.
/// </summary>
internal sealed class SentencePieceModel
{
    private const int ModelTypeBpe = 2;

    private SentencePieceModel(
        string[] pieces,
        float[] scores,
        SentencePieceType[] types,
        int modelType,
        bool byteFallback,
        bool treatWhitespaceAsSuffix,
        int unknownId,
        int bosId,
        int eosId,
        int padId,
        string unknownSurface,
        string normalizerName,
        bool addDummyPrefix,
        bool removeExtraWhitespaces,
        bool escapeWhitespaces)
    {
        Pieces = pieces;
        Scores = scores;
        Types = types;
        ModelType = modelType;
        ByteFallback = byteFallback;
        TreatWhitespaceAsSuffix = treatWhitespaceAsSuffix;
        UnknownId = unknownId;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
        UnknownSurface = unknownSurface;
        NormalizerName = normalizerName;
        AddDummyPrefix = addDummyPrefix;
        RemoveExtraWhitespaces = removeExtraWhitespaces;
        EscapeWhitespaces = escapeWhitespaces;
    }

    public string[] Pieces { get; }

    public float[] Scores { get; }

    public SentencePieceType[] Types { get; }

    public int ModelType { get; }

    public bool ByteFallback { get; }

    public bool TreatWhitespaceAsSuffix { get; }

    public int UnknownId { get; }

    public int BosId { get; }

    public int EosId { get; }

    /// <summary>trainer_spec.pad_id: -1 when the model defines no pad piece (Mistral).</summary>
    public int PadId { get; }

    public string UnknownSurface { get; }

    public string NormalizerName { get; }

    public bool AddDummyPrefix { get; }

    public bool RemoveExtraWhitespaces { get; }

    public bool EscapeWhitespaces { get; }

    /// <summary>
    /// Parses a serialized <c>ModelProto</c> and checks that it is a BPE model this library can reproduce exactly.
    /// </summary>
    /// <param name="data">The file's bytes.</param>
    /// <param name="source">The file path or stream name used in error messages.</param>
    /// <exception cref="InvalidDataException">The bytes are not a SentencePiece BPE model.</exception>
    public static SentencePieceModel Parse(ReadOnlySpan<byte> data, string source)
    {
        var pieces = new List<string>();
        var scores = new List<float>();
        var types = new List<SentencePieceType>();
        int modelType = 1;
        bool byteFallback = false, suffix = false;
        int unk = 0, bos = 1, eos = 2, pad = -1;
        string unkSurface = " \u2047 ";
        string normalizerName = string.Empty;
        bool dummyPrefix = true, removeExtra = true, escape = true;
        bool sawTrainer = false;
        int charsmapBytes = 0;

        try
        {
            var reader = new ProtoWireReader(data);
            while (!reader.AtEnd)
            {
                (int field, int wire) = reader.ReadTag();
                if (field == 1 && wire == 2)
                {
                    ReadPiece(reader.ReadLengthDelimited(), pieces, scores, types);
                }
                else if (field == 2 && wire == 2)
                {
                    sawTrainer = true;
                    var t = new ProtoWireReader(reader.ReadLengthDelimited());
                    while (!t.AtEnd)
                    {
                        (int f, int w) = t.ReadTag();
                        switch (f)
                        {
                            case 3 when w == 0: modelType = (int)t.ReadVarint(); break;
                            case 24 when w == 0: suffix = t.ReadVarint() != 0; break;
                            case 35 when w == 0: byteFallback = t.ReadVarint() != 0; break;
                            case 40 when w == 0: unk = (int)t.ReadVarint(); break;
                            case 41 when w == 0: bos = (int)t.ReadVarint(); break;
                            case 42 when w == 0: eos = (int)t.ReadVarint(); break;
                            case 43 when w == 0: pad = (int)t.ReadVarint(); break;
                            case 44 when w == 2: unkSurface = t.ReadString(); break;
                            default: t.Skip(w); break;
                        }
                    }
                }
                else if (field == 3 && wire == 2)
                {
                    var n = new ProtoWireReader(reader.ReadLengthDelimited());
                    while (!n.AtEnd)
                    {
                        (int f, int w) = n.ReadTag();
                        switch (f)
                        {
                            case 1 when w == 2: normalizerName = n.ReadString(); break;
                            case 2 when w == 2: charsmapBytes = n.ReadLengthDelimited().Length; break;
                            case 3 when w == 0: dummyPrefix = n.ReadVarint() != 0; break;
                            case 4 when w == 0: removeExtra = n.ReadVarint() != 0; break;
                            case 5 when w == 0: escape = n.ReadVarint() != 0; break;
                            default: n.Skip(w); break;
                        }
                    }
                }
                else
                {
                    reader.Skip(wire);
                }
            }
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"'{source}' is not a valid SentencePiece model (tokenizer.model): {e.Message}.", e);
        }

        if (pieces.Count == 0 || !sawTrainer)
        {
            throw new InvalidDataException(
                $"'{source}' is not a valid SentencePiece model (tokenizer.model): it has {pieces.Count} pieces and {(sawTrainer ? "a" : "no")} trainer_spec.");
        }

        if (modelType != ModelTypeBpe)
        {
            throw new InvalidDataException(
                $"'{source}': trainer_spec.model_type is {modelType}; only BPE (2) models, as Mistral's, are supported.");
        }

        if (charsmapBytes > 0)
        {
            throw new InvalidDataException(
                $"'{source}': normalizer_spec '{normalizerName}' has a precompiled_charsmap ({charsmapBytes} bytes); only the identity " +
                "normalizer (Mistral's and Llama's) is supported, since Microsoft.ML.Tokenizers 2.0.1 does not apply charsmaps.");
        }

        if (suffix)
        {
            throw new InvalidDataException($"'{source}': trainer_spec.treat_whitespace_as_suffix=true is not supported.");
        }

        CheckId(unk, "trainer_spec.unk_id", pieces.Count, source, required: true);
        CheckId(bos, "trainer_spec.bos_id", pieces.Count, source, required: false);
        CheckId(eos, "trainer_spec.eos_id", pieces.Count, source, required: false);
        CheckId(pad, "trainer_spec.pad_id", pieces.Count, source, required: false);

        var index = new Dictionary<string, int>(pieces.Count, StringComparer.Ordinal);
        for (int i = 0; i < pieces.Count; i++)
        {
            if (!index.TryAdd(pieces[i], i))
            {
                throw new InvalidDataException($"'{source}': piece '{pieces[i]}' appears twice (ids {index[pieces[i]]} and {i}).");
            }
        }

        if (byteFallback)
        {
            for (int b = 0; b < 256; b++)
            {
                string name = $"<0x{b:X2}>";
                if (!index.TryGetValue(name, out int i) || types[i] != SentencePieceType.Byte)
                {
                    throw new InvalidDataException(
                        $"'{source}': trainer_spec.byte_fallback is true but byte piece {name} is missing or not of type BYTE.");
                }
            }
        }

        return new SentencePieceModel(
            pieces.ToArray(), scores.ToArray(), types.ToArray(), modelType, byteFallback, suffix,
            unk, bos, eos, pad, unkSurface, normalizerName, dummyPrefix, removeExtra, escape);
    }

    private static void ReadPiece(ReadOnlySpan<byte> data, List<string> pieces, List<float> scores, List<SentencePieceType> types)
    {
        var r = new ProtoWireReader(data);
        string? piece = null;
        float score = 0;
        int type = 1;
        while (!r.AtEnd)
        {
            (int f, int w) = r.ReadTag();
            switch (f)
            {
                case 1 when w == 2: piece = r.ReadString(); break;
                case 2 when w == 5: score = r.ReadFixed32Float(); break;
                case 3 when w == 0: type = (int)r.ReadVarint(); break;
                default: r.Skip(w); break;
            }
        }

        if (string.IsNullOrEmpty(piece))
        {
            throw new InvalidDataException($"piece {pieces.Count} has no text");
        }

        if (type is < 1 or > 6)
        {
            throw new InvalidDataException($"piece {pieces.Count} ('{piece}') has unknown type {type}");
        }

        pieces.Add(piece);
        scores.Add(score);
        types.Add((SentencePieceType)type);
    }

    private static void CheckId(int id, string field, int count, string source, bool required)
    {
        if (id >= count || id < (required ? 0 : -1))
        {
            throw new InvalidDataException($"'{source}': {field}={id} is outside the vocabulary of {count} pieces.");
        }
    }
}
