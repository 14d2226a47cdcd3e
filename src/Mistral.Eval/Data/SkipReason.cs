namespace Mistral.Eval.Data;

/// <summary>Why a row was not read.</summary>
public enum SkipReason
{
    /// <summary>The record is not well-formed (invalid JSON, not a JSON object, a mapped JSON string with a lone surrogate escape such as <c>\ud800</c>, wrong CSV field count or quoting).</summary>
    MalformedRecord,

    /// <summary>A mapped column is absent from this record (a JSON key that is not there).</summary>
    MissingValue,

    /// <summary>A mapped column is null (JSON <c>null</c>, an empty CSV field, a Parquet null).</summary>
    NullValue,

    /// <summary>A mapped column holds a number, boolean, object or other non-string value.</summary>
    NonStringValue,
}
