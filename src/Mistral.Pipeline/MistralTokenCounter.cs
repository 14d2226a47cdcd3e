using Mistral.Core.Tokenization;
using Mistral.Eval.Prompts;

namespace Mistral.Pipeline;

/// <summary>
/// Lets <see cref="PromptFitter"/> (in Mistral.Eval, which has no TorchSharp) count tokens with the model's real
/// <see cref="MistralTokenizer"/>, exactly as a prompt is fed to the model (with BOS when the tokenizer adds it).
/// </summary>
/// <param name="tokenizer">The model's tokenizer.</param>
public sealed class MistralTokenCounter(MistralTokenizer tokenizer) : ITokenCounter
{
    private readonly MistralTokenizer _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    /// <inheritdoc />
    public int CountTokens(string text) => _tokenizer.CountTokens(text);
}
