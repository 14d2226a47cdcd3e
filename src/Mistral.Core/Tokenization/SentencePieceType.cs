namespace Mistral.Core.Tokenization;

/// <summary>The kind of a SentencePiece vocabulary entry (<c>ModelProto.SentencePiece.Type</c>).</summary>
public enum SentencePieceType
{
    /// <summary>An ordinary piece produced by BPE merges.</summary>
    Normal = 1,

    /// <summary>The unknown piece (<c>&lt;unk&gt;</c>).</summary>
    Unknown = 2,

    /// <summary>A control piece such as <c>&lt;s&gt;</c> or <c>&lt;/s&gt;</c>; never produced from text, invisible when decoded.</summary>
    Control = 3,

    /// <summary>A user-defined piece, always kept whole when it appears in text.</summary>
    UserDefined = 4,

    /// <summary>A byte-fallback piece <c>&lt;0xXX&gt;</c> standing for one UTF-8 byte.</summary>
    Byte = 6,

    /// <summary>A piece that exists in the vocabulary but is never emitted (re-split into its parts).</summary>
    Unused = 5,
}
