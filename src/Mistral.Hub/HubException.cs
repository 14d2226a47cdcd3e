using System.Net;

namespace Mistral.Hub;

/// <summary>A Hub request or cache lookup that failed; names the repository, revision, file and HTTP status.</summary>
public sealed class HubException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The full message.</param>
    /// <param name="repoId">The repository.</param>
    /// <param name="revision">The revision asked for.</param>
    /// <param name="file">The file, if the error is about one.</param>
    /// <param name="statusCode">The HTTP status, if a response came.</param>
    /// <param name="inner">The underlying error.</param>
    public HubException(string message, string repoId, string revision, string? file = null, HttpStatusCode? statusCode = null, Exception? inner = null)
        : base(message, inner)
    {
        RepoId = repoId;
        Revision = revision;
        File = file;
        StatusCode = statusCode;
    }

    /// <summary>The repository id (<c>org/name</c>).</summary>
    public string RepoId { get; }

    /// <summary>The revision asked for.</summary>
    public string Revision { get; }

    /// <summary>The file inside the repository, when the error is about one.</summary>
    public string? File { get; }

    /// <summary>The HTTP status of the failing response; null for cache (offline) and transport errors.</summary>
    public HttpStatusCode? StatusCode { get; }
}
