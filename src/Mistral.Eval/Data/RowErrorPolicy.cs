namespace Mistral.Eval.Data;

/// <summary>What a reader does with a row it cannot turn into an <see cref="Example"/>.</summary>
public enum RowErrorPolicy
{
    /// <summary>Throw a <see cref="DatasetException"/> naming the file, line/row and column.</summary>
    Fail,

    /// <summary>Skip the row and count it (with its reason) in the <see cref="DatasetReadResult"/>.</summary>
    Skip,
}
