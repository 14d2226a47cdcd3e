using System.Text;
using Microsoft.Extensions.AI;
using Mistral.Core.Tokenization;

namespace Mistral.Extensions.AI;

/// <summary>Renders conversations in a <see cref="MistralChatFormat"/>, as text (for display) and as token ids.</summary>
public static class MistralChatTemplate
{
    /// <summary>
    /// The prompt as text, special tokens written as <c>&lt;s&gt;</c> and <c>&lt;/s&gt;</c> (as Hugging Face's chat
    /// template renders it before tokenization).
    /// </summary>
    /// <exception cref="ArgumentException">An instruct conversation whose roles do not alternate user/assistant, or an unsupported role.</exception>
    public static string Render(IEnumerable<ChatMessage> messages, MistralChatFormat format, string plainSeparator = "\n")
    {
        var text = new StringBuilder();
        foreach (Segment s in Segments(messages, format, plainSeparator))
        {
            text.Append(s.Special switch { SpecialToken.Bos => "<s>", SpecialToken.Eos => "</s>", _ => s.Text });
        }

        return text.ToString();
    }

    /// <summary>
    /// The prompt as token ids: BOS and EOS as the tokenizer's ids, each text between them encoded without BOS/EOS.
    /// </summary>
    /// <exception cref="ArgumentException">An instruct conversation whose roles do not alternate user/assistant, or an unsupported role.</exception>
    public static int[] Encode(MistralTokenizer tokenizer, IEnumerable<ChatMessage> messages, MistralChatFormat format, string plainSeparator = "\n")
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var ids = new List<int>();
        foreach (Segment s in Segments(messages, format, plainSeparator))
        {
            switch (s.Special)
            {
                case SpecialToken.Bos:
                    ids.Add(tokenizer.BosId);
                    break;
                case SpecialToken.Eos:
                    ids.Add(tokenizer.EosId);
                    break;
                default:
                    ids.AddRange(tokenizer.Encode(s.Text, addBeginningOfSentence: false, addEndOfSentence: false));
                    break;
            }
        }

        return [.. ids];
    }

    private enum SpecialToken
    {
        None,
        Bos,
        Eos,
    }

    private readonly record struct Segment(SpecialToken Special, string Text);

    private static List<Segment> Segments(IEnumerable<ChatMessage> messages, MistralChatFormat format, string plainSeparator)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(plainSeparator);
        var list = messages.ToList();
        var segments = new List<Segment> { new(SpecialToken.Bos, "") };
        if (format == MistralChatFormat.Plain)
        {
            segments.Add(new(SpecialToken.None, string.Join(plainSeparator, list.Select(m => m.Text))));
            return segments;
        }

        if (format != MistralChatFormat.Instruct)
        {
            throw new ArgumentOutOfRangeException(nameof(format), format, "Unknown chat format.");
        }

        string system = string.Join("\n\n", list.Where(m => m.Role == ChatRole.System).Select(m => m.Text));
        var turns = list.Where(m => m.Role != ChatRole.System).ToList();
        for (int i = 0; i < turns.Count; i++)
        {
            ChatMessage m = turns[i];
            ChatRole expected = i % 2 == 0 ? ChatRole.User : ChatRole.Assistant;
            if (m.Role != ChatRole.User && m.Role != ChatRole.Assistant)
            {
                throw new ArgumentException($"Message {i}: the instruct format supports the system, user and assistant roles, not '{m.Role}'.", nameof(messages));
            }

            if (m.Role != expected)
            {
                throw new ArgumentException($"Message {i}: the instruct format needs alternating user/assistant turns starting with user; got '{m.Role}'.", nameof(messages));
            }

            if (m.Role == ChatRole.User)
            {
                string content = i == 0 && system.Length > 0 ? system + "\n\n" + m.Text : m.Text;
                segments.Add(new(SpecialToken.None, "[INST] " + content + " [/INST]"));
            }
            else
            {
                segments.Add(new(SpecialToken.None, m.Text));
                segments.Add(new(SpecialToken.Eos, ""));
            }
        }

        return segments;
    }
}
