namespace Mistral.Eval.Data;

/// <summary>A column value as found in a file, before the string check.</summary>
internal readonly record struct RawValue(RawValueKind Kind, string? Text, string? Description)
{
    public static RawValue Missing { get; } = new(RawValueKind.Missing, null, null);

    public static RawValue Null { get; } = new(RawValueKind.Null, null, null);

    public static RawValue Of(string text) => new(RawValueKind.String, text, null);

    /// <summary>A number or boolean; <paramref name="text"/> is used when scalars are converted to strings.</summary>
    public static RawValue Scalar(string text, string description) => new(RawValueKind.Scalar, text, description);

    public static RawValue Other(string description) => new(RawValueKind.Other, null, description);

    /// <summary>A value the format cannot turn into text (a JSON lone surrogate): a malformed record.</summary>
    public static RawValue Malformed(string description) => new(RawValueKind.Malformed, null, description);
}

/// <summary>The kind of a <see cref="RawValue"/>.</summary>
internal enum RawValueKind
{
    String,
    Missing,
    Null,
    Scalar,
    Other,
    Malformed,
}
