namespace Mistral.Eval.Prompts;

/// <summary>A prompt template is malformed, or was rendered with a missing or unknown placeholder value.</summary>
public sealed class PromptTemplateException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong, naming the template and placeholder.</param>
    /// <param name="templateName">The template's name.</param>
    /// <param name="placeholder">The placeholder concerned, if any.</param>
    public PromptTemplateException(string message, string templateName, string? placeholder)
        : base(message)
    {
        TemplateName = templateName;
        Placeholder = placeholder;
    }

    /// <summary>The name of the template concerned.</summary>
    public string TemplateName { get; }

    /// <summary>The placeholder that is missing, unknown or malformed; null when the error concerns none.</summary>
    public string? Placeholder { get; }
}
