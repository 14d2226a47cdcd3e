using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Mistral.Hub.Tests;

/// <summary>One request as the loopback server saw it.</summary>
public sealed record SeenRequest(string Server, string Method, string Path, IReadOnlyDictionary<string, string> Headers);

/// <summary>A file of a fake repository; LFS files are served from the CDN host with their SHA-256 as ETag.</summary>
public sealed record FakeFile(string Path, byte[] Content, bool Lfs)
{
    public string Sha256 => Convert.ToHexStringLower(SHA256.HashData(Content));

    /// <summary>The git blob id, which the Hub sends as the ETag of a regular file.</summary>
    public string GitSha1 => Convert.ToHexStringLower(SHA1.HashData(
        [.. Encoding.ASCII.GetBytes($"blob {Content.Length}\0"), .. Content]));

    public string Etag => Lfs ? Sha256 : GitSha1;
}

/// <summary>A fake repository.</summary>
public sealed record FakeRepo(string Kind, string Id, string Commit, IReadOnlyList<FakeFile> Files)
{
    public bool Gated { get; init; }

    /// <summary>Files listed by the API but answering 404 on resolve.</summary>
    public HashSet<string> Missing { get; init; } = [];

    /// <summary>Branches and refs besides <c>main</c> that point at <see cref="Commit"/> (e.g. <c>refs/convert/parquet</c>, where the Hub keeps datasets' Parquet conversions).</summary>
    public HashSet<string> Branches { get; init; } = [];

    public bool Resolves(string revision) => revision == "main" || revision == Commit || Branches.Contains(revision);
}

/// <summary>
/// Two minimal HTTP/1.1 servers on loopback that behave like the Hub: the API and resolve endpoints on 127.0.0.1, and
/// LFS content on a "CDN" addressed as <c>localhost</c> (another host name) through 302 redirects. Every connection is
/// closed after one response; the servers stop after <see cref="MaxRequests"/> requests and on dispose.
/// </summary>
public sealed class LoopbackHub : IAsyncDisposable
{
    private readonly TcpListener _hub = new(IPAddress.Loopback, 0);
    private readonly TcpListener _cdn = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromSeconds(60));
    private readonly Task[] _loops;
    private int _requests;
    private int _cdnInFlight;

    public LoopbackHub(params FakeRepo[] repos)
    {
        Repos = repos.ToList();
        _hub.Start();
        _cdn.Start();
        _loops = [AcceptLoop(_hub, "hub"), AcceptLoop(_cdn, "cdn")];
    }

    public List<FakeRepo> Repos { get; }

    public string Endpoint => $"http://127.0.0.1:{((IPEndPoint)_hub.LocalEndpoint).Port}";

    public string CdnBase => $"http://localhost:{((IPEndPoint)_cdn.LocalEndpoint).Port}";

    public ConcurrentQueue<SeenRequest> Requests { get; } = new();

    public int MaxRequests { get; set; } = 500;

    /// <summary>Token the Hub requires for gated repositories.</summary>
    public string? AcceptedToken { get; set; }

    /// <summary>SHA-256 → bytes to send before cutting the connection, once.</summary>
    public ConcurrentDictionary<string, int> InterruptOnce { get; } = new();

    /// <summary>SHA-256 of LFS files served with one byte flipped.</summary>
    public ConcurrentDictionary<string, bool> Corrupt { get; } = new();

    public int CdnDelayMs { get; set; }

    /// <summary>Old repository id → new one; the Hub answers 307 with a relative Location.</summary>
    public Dictionary<string, string> Renamed { get; } = [];

    public int MaxCdnConcurrency { get; private set; }

    public static string NewCommit() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));

    public static byte[] RandomBytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _hub.Stop();
        _cdn.Stop();
        try
        {
            await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception)
        {
            // The loops end with the listeners.
        }

        _stop.Dispose();
    }

    private async Task AcceptLoop(TcpListener listener, string name)
    {
        var connections = new List<Task>();
        try
        {
            while (!_stop.IsCancellationRequested && Interlocked.Increment(ref _requests) <= MaxRequests)
            {
                TcpClient client = await listener.AcceptTcpClientAsync(_stop.Token);
                connections.Add(Task.Run(() => Serve(client, name)));
            }
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        await Task.WhenAll(connections);
    }

    private async Task Serve(TcpClient client, string server)
    {
        using (client)
        {
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                timeout.CancelAfter(TimeSpan.FromSeconds(15));
                NetworkStream stream = client.GetStream();
                string head = await ReadHead(stream, timeout.Token);
                string[] lines = head.Split("\r\n");
                string[] first = lines[0].Split(' ');
                var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                foreach (string line in lines.Skip(1).Where(l => l.Contains(':')))
                {
                    int c = line.IndexOf(':');
                    headers[line[..c].Trim()] = line[(c + 1)..].Trim();
                }

                var req = new SeenRequest(server, first[0], first[1], headers);
                Requests.Enqueue(req);
                if (server == "cdn")
                {
                    int now = Interlocked.Increment(ref _cdnInFlight);
                    lock (Requests)
                    {
                        MaxCdnConcurrency = Math.Max(MaxCdnConcurrency, now);
                    }

                    try
                    {
                        await Task.Delay(CdnDelayMs, timeout.Token);
                        await ServeCdn(stream, req, timeout.Token);
                    }
                    finally
                    {
                        Interlocked.Decrement(ref _cdnInFlight);
                    }
                }
                else
                {
                    await ServeHub(stream, req, timeout.Token);
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
            {
                // The client went away.
            }
        }
    }

    private static async Task<string> ReadHead(NetworkStream stream, CancellationToken ct)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (bytes.Count < 16384)
        {
            if (await stream.ReadAsync(one, ct) == 0)
            {
                break;
            }

            bytes.Add(one[0]);
            int n = bytes.Count;
            if (n >= 4 && bytes[n - 4] == '\r' && bytes[n - 3] == '\n' && bytes[n - 2] == '\r' && bytes[n - 1] == '\n')
            {
                break;
            }
        }

        return Encoding.ASCII.GetString(bytes.ToArray()).TrimEnd();
    }

    private static async Task Respond(
        NetworkStream s, int status, IDictionary<string, string>? headers, byte[]? body, bool headOnly, long? contentLength, CancellationToken ct, int? cutAfter = null)
    {
        var sb = new StringBuilder($"HTTP/1.1 {status} {ReasonFor(status)}\r\nConnection: close\r\n");
        foreach (var (k, v) in headers ?? new Dictionary<string, string>())
        {
            sb.Append(k).Append(": ").Append(v).Append("\r\n");
        }

        sb.Append("Content-Length: ").Append(contentLength ?? body?.Length ?? 0).Append("\r\n\r\n");
        await s.WriteAsync(Encoding.ASCII.GetBytes(sb.ToString()), ct);
        if (!headOnly && body is not null)
        {
            await s.WriteAsync(body.AsMemory(0, Math.Min(body.Length, cutAfter ?? body.Length)), ct);
        }

        await s.FlushAsync(ct);
    }

    private static string ReasonFor(int status) => status switch
    {
        200 => "OK", 206 => "Partial Content", 302 => "Found", 307 => "Temporary Redirect", 401 => "Unauthorized", 404 => "Not Found", 416 => "Range Not Satisfiable", _ => "X",
    };

    private async Task ServeHub(NetworkStream s, SeenRequest req, CancellationToken ct)
    {
        bool head = req.Method == "HEAD";
        string path = req.Path.Split('?')[0];
        bool authorized = AcceptedToken is not null && req.Headers.TryGetValue("Authorization", out string? auth) && auth == $"Bearer {AcceptedToken}";
        foreach (var (from, to) in Renamed)
        {
            if (path.Contains($"/{from}/", StringComparison.Ordinal))
            {
                await Respond(s, 307, new Dictionary<string, string> { ["Location"] = req.Path.Replace($"/{from}/", $"/{to}/", StringComparison.Ordinal) }, null, head, null, ct);
                return;
            }
        }

        if (path.StartsWith("/api/", StringComparison.Ordinal))
        {
            // /api/{models|datasets}/{org}/{name}/revision/{rev}
            string[] parts = path.Split('/');
            string kind = parts[2];
            string id = $"{parts[3]}/{parts[4]}";
            string revision = Uri.UnescapeDataString(parts[6]);
            FakeRepo? repo = Repos.FirstOrDefault(r => r.Kind == kind && r.Id == id);
            if (repo is null)
            {
                await Respond(s, 404, new Dictionary<string, string> { ["X-Error-Code"] = "RepoNotFound" }, null, head, null, ct);
                return;
            }

            if (repo.Gated && !authorized)
            {
                await Respond(s, 401, new Dictionary<string, string> { ["X-Error-Code"] = "GatedRepo", ["X-Error-Message"] = "Access to this repository is restricted." }, null, head, null, ct);
                return;
            }

            if (!repo.Resolves(revision))
            {
                await Respond(s, 404, new Dictionary<string, string> { ["X-Error-Code"] = "RevisionNotFound" }, null, head, null, ct);
                return;
            }

            byte[] json = JsonSerializer.SerializeToUtf8Bytes(new
            {
                id = repo.Id,
                sha = repo.Commit,
                siblings = repo.Files.Select(f => new { rfilename = f.Path }).ToArray(),
            });
            await Respond(s, 200, new Dictionary<string, string> { ["Content-Type"] = "application/json" }, json, head, null, ct);
            return;
        }

        // /{org}/{name}/resolve/{rev}/{file} or /datasets/{org}/{name}/resolve/{rev}/{file}
        string[] p = path.TrimStart('/').Split('/');
        string k = "models";
        if (p[0] == "datasets")
        {
            k = "datasets";
            p = p[1..];
        }

        FakeRepo? r = Repos.FirstOrDefault(x => x.Kind == k && x.Id == $"{p[0]}/{p[1]}");
        string rev = p.Length > 3 ? Uri.UnescapeDataString(p[3]) : "";
        string filePath = string.Join('/', p.Skip(4).Select(Uri.UnescapeDataString));
        FakeFile? file = r?.Files.FirstOrDefault(f => f.Path == filePath);
        if (r is null || p[2] != "resolve")
        {
            await Respond(s, 404, new Dictionary<string, string> { ["X-Error-Code"] = "RepoNotFound" }, null, head, null, ct);
            return;
        }

        if (r.Gated && !authorized)
        {
            await Respond(s, 401, new Dictionary<string, string> { ["X-Error-Code"] = "GatedRepo" }, null, head, null, ct);
            return;
        }

        if (!r.Resolves(rev))
        {
            await Respond(s, 404, new Dictionary<string, string> { ["X-Error-Code"] = "RevisionNotFound" }, null, head, null, ct);
            return;
        }

        if (file is null || r.Missing.Contains(filePath))
        {
            await Respond(s, 404, new Dictionary<string, string> { ["X-Error-Code"] = "EntryNotFound" }, null, head, null, ct);
            return;
        }

        var h = new Dictionary<string, string> { ["X-Repo-Commit"] = r.Commit };
        if (file.Lfs)
        {
            h["X-Linked-Etag"] = $"\"{file.Sha256}\"";
            h["X-Linked-Size"] = file.Content.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            h["ETag"] = $"\"{file.GitSha1}\"";
            h["Location"] = $"{CdnBase}/blob/{file.Sha256}?signature=abc";
            await Respond(s, 302, h, null, head, null, ct);
            return;
        }

        h["ETag"] = $"\"{file.GitSha1}\"";
        await ServeContent(s, req, file.Content, h, head, ct, null);
    }

    private async Task ServeCdn(NetworkStream s, SeenRequest req, CancellationToken ct)
    {
        string sha = req.Path.Split('?')[0].Split('/').Last();
        FakeFile? file = Repos.SelectMany(r => r.Files).FirstOrDefault(f => f.Lfs && f.Sha256 == sha);
        if (file is null)
        {
            await Respond(s, 404, null, null, req.Method == "HEAD", null, ct);
            return;
        }

        byte[] content = file.Content;
        if (Corrupt.ContainsKey(sha))
        {
            content = (byte[])content.Clone();
            content[content.Length / 2] ^= 0xFF;
        }

        int? cut = InterruptOnce.TryRemove(sha, out int c) ? c : null;
        await ServeContent(s, req, content, new Dictionary<string, string>(), req.Method == "HEAD", ct, cut);
    }

    private static async Task ServeContent(NetworkStream s, SeenRequest req, byte[] content, Dictionary<string, string> h, bool head, CancellationToken ct, int? cut)
    {
        if (req.Headers.TryGetValue("Range", out string? range) && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            long from = long.Parse(range[6..^1], System.Globalization.CultureInfo.InvariantCulture);
            if (from >= content.Length)
            {
                h["Content-Range"] = $"bytes */{content.Length}";
                await Respond(s, 416, h, null, head, null, ct);
                return;
            }

            h["Content-Range"] = $"bytes {from}-{content.Length - 1}/{content.Length}";
            byte[] part = content[(int)from..];
            await Respond(s, 206, h, part, head, part.Length, ct, cut);
            return;
        }

        await Respond(s, 200, h, content, head, content.Length, ct, cut);
    }
}
