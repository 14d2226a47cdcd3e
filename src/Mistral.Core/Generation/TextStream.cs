using System.Text;
using Mistral.Core.Tokenization;

namespace Mistral.Core.Generation;

/// <summary>
/// Turns one sequence's new token ids into text as they arrive: SentencePiece spaces and multi-byte characters are
/// handled by <see cref="StreamingDecoder"/>, and text that could still become a stop string is held back, so the
/// concatenation of everything emitted equals the final text (cut before the first stop string).
/// </summary>
internal sealed class TextStream
{
    private readonly StreamingDecoder decoder;
    private readonly IReadOnlyList<string> stopStrings;
    private readonly int holdBack;
    private readonly StringBuilder text = new();
    private int emitted;
    private int? stopAt;

    public TextStream(MistralTokenizer tokenizer, IReadOnlyList<string> stopStrings)
    {
        decoder = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        this.stopStrings = stopStrings;
        holdBack = stopStrings.Count == 0 ? 0 : stopStrings.Max(s => s.Length) - 1;
    }

    /// <summary>Whether a stop string has appeared.</summary>
    public bool Stopped => stopAt is not null;

    /// <summary>The final text so far (cut before a stop string once one appeared).</summary>
    public string Text => stopAt is int cut ? text.ToString(0, cut) : text.ToString();

    /// <summary>Adds a token; returns the text that is now safe to show.</summary>
    public string Append(int id)
    {
        if (stopAt is not null)
        {
            return string.Empty;
        }

        int searchFrom = Math.Max(0, text.Length - holdBack);
        text.Append(decoder.Append(id));
        if (stopStrings.Count > 0)
        {
            string window = text.ToString(searchFrom, text.Length - searchFrom);
            int best = -1;
            foreach (string stop in stopStrings)
            {
                int i = window.IndexOf(stop, StringComparison.Ordinal);
                if (i >= 0 && (best < 0 || i < best))
                {
                    best = i;
                }
            }

            if (best >= 0)
            {
                stopAt = searchFrom + best;
                return Emit(stopAt.Value);
            }
        }

        int safe = text.Length - holdBack;
        if (safe > 0 && safe < text.Length && char.IsHighSurrogate(text[safe - 1]))
        {
            safe--;
        }

        return Emit(safe);
    }

    /// <summary>Ends the sequence; returns the held-back remainder.</summary>
    public string Finish()
    {
        if (stopAt is null)
        {
            text.Append(decoder.Flush());
        }

        return Emit(stopAt ?? text.Length);
    }

    private string Emit(int upTo)
    {
        if (upTo <= emitted)
        {
            return string.Empty;
        }

        string piece = text.ToString(emitted, upTo - emitted);
        emitted = upTo;
        return piece;
    }
}
