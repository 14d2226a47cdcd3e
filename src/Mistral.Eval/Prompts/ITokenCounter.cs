namespace Mistral.Eval.Prompts;

/// <summary>Counts the tokens of a text as the model's tokenizer would (implemented by the tokenizer in Mistral.Core).</summary>
public interface ITokenCounter
{
    /// <summary>Returns the number of tokens <paramref name="text"/> encodes to, as the prompt would be fed to the model.</summary>
    /// <param name="text">The text to count.</param>
    /// <returns>The token count.</returns>
    int CountTokens(string text);
}
