using System.Text.RegularExpressions;

namespace Mistral.Hub;

/// <summary>
/// A location on the Hub written as huggingface_hub's HF URI: <c>hf://[models/|datasets/]org/name[@revision][/path]</c>,
/// e.g. <c>hf://datasets/rungalileo/20_Newsgroups_Fixed/data/train-*.parquet</c>. The path may be a file, a folder or
/// a glob (<c>*</c>, <c>?</c>, <c>[seq]</c>; matched as <see cref="HubDownloadOptions.AllowPatterns"/> are).
/// </summary>
/// <remarks>
/// The grammar is <c>huggingface_hub.utils.parse_hf_uri</c>'s (the one pandas, Polars, DuckDB and <c>HfFileSystem</c> read):
/// the type prefix is plural and optional for models; the id is always <c>namespace/name</c>; an <c>@</c> right after the id
/// starts the revision, which ends at the next <c>/</c> except for <c>refs/pr/N</c> and <c>refs/convert/NAME</c>; a
/// <c>/</c> inside another revision is written <c>%2F</c>. Spaces, kernels and buckets are not supported here.
/// </remarks>
public sealed partial record HubUri
{
    /// <summary>The scheme prefix, <c>hf://</c>.</summary>
    public const string Scheme = "hf://";

    /// <summary>Creates a URI.</summary>
    /// <param name="repoType">Model or dataset.</param>
    /// <param name="repoId">The repository id, <c>namespace/name</c>.</param>
    /// <param name="revision">Branch, tag or commit hash.</param>
    /// <param name="path">A file, folder or glob inside the repository; empty for the whole repository.</param>
    /// <exception cref="ArgumentException">The id is not <c>namespace/name</c>, the revision is empty, or the path has an empty segment.</exception>
    public HubUri(HubRepoType repoType, string repoId, string revision = "main", string path = "")
    {
        ArgumentNullException.ThrowIfNull(repoId);
        ArgumentNullException.ThrowIfNull(path);
        if (!HubClient.IsNamespacedRepoId(repoId))
        {
            throw new ArgumentException($"\"{repoId}\" is not a Hub repository id of the form namespace/name (letters, digits, '-', '_', '.').", nameof(repoId));
        }

        ArgumentException.ThrowIfNullOrWhiteSpace(revision);
        if (path.StartsWith('/') || path.Contains("//", StringComparison.Ordinal))
        {
            throw new ArgumentException($"The path \"{path}\" has an empty segment.", nameof(path));
        }

        RepoType = repoType;
        RepoId = repoId;
        Revision = revision;
        Path = path.TrimEnd('/');
    }

    /// <summary>Model or dataset.</summary>
    public HubRepoType RepoType { get; }

    /// <summary>The repository id, <c>namespace/name</c>.</summary>
    public string RepoId { get; }

    /// <summary>The branch, tag or commit hash (<c>main</c> when the URI names none).</summary>
    public string Revision { get; }

    /// <summary>The file, folder or glob inside the repository, without a trailing <c>/</c>; empty for the whole repository.</summary>
    public string Path { get; }

    /// <summary>Whether <see cref="Path"/> holds a glob character (<c>*</c>, <c>?</c>, <c>[</c>).</summary>
    public bool IsPattern => Path.AsSpan().IndexOfAny("*?[") >= 0;

    /// <summary>
    /// The globs that select <see cref="Path"/>'s files for <see cref="HubDownloadOptions.AllowPatterns"/>: the pattern itself,
    /// the file or the folder of that name, or null (everything) for the whole repository.
    /// </summary>
    public IReadOnlyList<string>? AllowPatterns =>
        Path.Length == 0 ? null
        : IsPattern ? [Path]
        : [Path, Path + "/"];

    /// <summary>Whether <paramref name="value"/> starts with <c>hf://</c> (it is meant as a Hub URI, valid or not).</summary>
    /// <param name="value">The text.</param>
    /// <returns>True when it has the scheme.</returns>
    public static bool HasScheme(string? value) => value?.StartsWith(Scheme, StringComparison.Ordinal) == true;

    /// <summary>Reads an HF URI.</summary>
    /// <param name="value">The text, e.g. <c>hf://datasets/org/name@v1/data/train-*.parquet</c>.</param>
    /// <returns>The URI.</returns>
    /// <exception cref="FormatException">The text is not an HF URI for a model or dataset; the message says which part is wrong.</exception>
    public static HubUri Parse(string value) =>
        TryParse(value, out HubUri? uri, out string? error) ? uri : throw new FormatException(error);

    /// <summary>Reads an HF URI.</summary>
    /// <param name="value">The text.</param>
    /// <param name="uri">The URI, when the text is one.</param>
    /// <returns>Whether the text is an HF URI for a model or dataset.</returns>
    public static bool TryParse(string? value, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out HubUri? uri) =>
        TryParse(value, out uri, out _);

    /// <summary>The canonical form: <c>hf://models/…</c> or <c>hf://datasets/…</c>, with <c>@revision</c> unless it is <c>main</c>.</summary>
    /// <returns>The URI text.</returns>
    public override string ToString()
    {
        string revision = Revision == "main" ? ""
            : "@" + (Revision.Contains('/') && SpecialRef().Match(Revision).Length != Revision.Length ? Revision.Replace("/", "%2F", StringComparison.Ordinal) : Revision);
        string path = Path.Length == 0 ? "" : "/" + Path;
        return $"{Scheme}{(RepoType == HubRepoType.Dataset ? "datasets" : "models")}/{RepoId}{revision}{path}";
    }

    private static bool TryParse(string? value, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out HubUri? uri, out string? error)
    {
        uri = null;
        if (!HasScheme(value))
        {
            error = $"\"{value}\" is not an HF URI: it must start with {Scheme} (hf://[datasets/]namespace/name[@revision][/path]).";
            return false;
        }

        string body = value![Scheme.Length..];
        string Fail(string why) => $"\"{value}\" is not a usable HF URI: {why} Expected hf://[models/|datasets/]namespace/name[@revision][/path].";
        HubRepoType type = HubRepoType.Model;
        int slash = body.IndexOf('/', StringComparison.Ordinal);
        string first = slash < 0 ? body : body[..slash];
        switch (first)
        {
            case "models":
            case "datasets":
                type = first == "datasets" ? HubRepoType.Dataset : HubRepoType.Model;
                body = slash < 0 ? "" : body[(slash + 1)..];
                break;
            case "model" or "dataset" or "space" or "kernel" or "bucket":
                error = Fail($"the type prefix must be plural ('{first}s/').");
                return false;
            case "spaces" or "kernels" or "buckets":
                error = Fail($"{first} are not supported here; only models and datasets.");
                return false;
        }

        body = body.Trim('/');
        string repoId, path, revision = "main";
        int at = body.IndexOf('@', StringComparison.Ordinal);
        if (at < 0 || body[..at].Count(c => c == '/') > 1)
        {
            string[] parts = body.Split('/', 3);
            if (parts.Length < 2)
            {
                error = Fail($"the repository id must be namespace/name, got '{body}'.");
                return false;
            }

            repoId = $"{parts[0]}/{parts[1]}";
            path = parts.Length > 2 ? parts[2] : "";
        }
        else
        {
            repoId = body[..at];
            string rest = body[(at + 1)..];
            Match special = SpecialRef().Match(rest);
            if (special.Success)
            {
                revision = special.Value;
                path = rest[special.Length..].TrimStart('/');
            }
            else
            {
                int s = rest.IndexOf('/', StringComparison.Ordinal);
                revision = Uri.UnescapeDataString(s < 0 ? rest : rest[..s]);
                path = s < 0 ? "" : rest[(s + 1)..];
            }

            if (revision.Length == 0)
            {
                error = Fail("the revision after '@' is empty.");
                return false;
            }
        }

        if (!HubClient.IsNamespacedRepoId(repoId))
        {
            error = Fail($"the repository id must be namespace/name (letters, digits, '-', '_', '.'), got '{repoId}'.");
            return false;
        }

        if (path.Contains("//", StringComparison.Ordinal))
        {
            error = Fail($"the path '{path}' has an empty segment.");
            return false;
        }

        uri = new HubUri(type, repoId, revision, path);
        error = null;
        return true;
    }

    /// <summary>Revisions holding a <c>/</c> that the grammar takes whole: pull-request refs and conversions such as <c>refs/convert/parquet</c>.</summary>
    [GeneratedRegex(@"^refs/(?:convert/[\w.-]+|pr/\d+)", RegexOptions.CultureInvariant)]
    private static partial Regex SpecialRef();
}
