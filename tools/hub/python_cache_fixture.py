#!/usr/bin/env python3
"""Writes a Hugging Face cache folder with Python's huggingface_hub, for Mistral.Hub to read (the other interop direction).

Usage (on a machine with huggingface_hub installed; no internet needed):
    python3 tools/hub/python_cache_fixture.py OUT.tar.gz [--keep DIR]
    python3 tools/hub/python_cache_fixture.py --self-test        # checks the fake Hub alone, with urllib (no huggingface_hub)

Output: OUT.tar.gz holding
    manifest.json   what was served (repository ids, commits, revisions, every file's path, size, SHA-256, git blob id,
                    LFS or not), which huggingface_hub call wrote each repository, the checks below, and every request
    hub/            the cache folder exactly as huggingface_hub wrote it (models--…, datasets--…, .locks, CACHEDIR.TAG,
                    trees/ where the version writes them); symlinks are kept as symlinks
and prints the same manifest as JSON. The fixture goes to tests/fixtures/hub/python_hub_cache.tar.gz, where
tests/Mistral.Hub.Tests/PythonWrittenCacheTests.cs reads it with HubClient offline. Exit code 0 when both repositories
were downloaded and every check passed; 1 otherwise (the archive is still written when a cache folder exists, for
diagnosis); 2 on a usage error.

How it works. Two small HTTP servers run on loopback in threads (http.server): the "Hub" (API and resolve endpoints)
and a "CDN" on another port (so another host:port, from which huggingface_hub drops the Authorization header as it
does for the real CDN). HF_ENDPOINT points at the Hub and is set before huggingface_hub is imported (the library reads
it at import time); every call also passes endpoint= explicitly. Proxies are switched off for loopback, HF_HOME is a
fresh temporary folder (no stored token is read), Xet and telemetry are off. Then:
  1. snapshot_download(repo_id="tiny-org/tiny-model", revision="main", cache_dir=CACHE)
     (falls back to hf_hub_download file by file at revision "main" if that raises; the manifest says which worked),
  2. hf_hub_download(repo_id="tiny-org/tiny-model", filename="config.json", revision="v1.0")  (a tag: refs/v1.0),
  3. snapshot_download(repo_id="tiny-org/tiny-dataset", repo_type="dataset", revision="main", cache_dir=CACHE)
     (same fallback),
  4. checks: refs/<revision> holds the commit, snapshots/<commit>/<file> is a symlink into blobs/<etag> (the SHA-256
     for LFS files, the git blob id otherwise) whose content has the served SHA-256; snapshot_download with
     local_files_only=True finds the same folder; scan_cache_dir() reports no warnings.
Every exception is printed with its full traceback and recorded in the manifest; the script goes on where it can.

What the fake Hub imitates (read from huggingface_hub 1.x: file_download.py, _snapshot_download.py, hf_api.py,
utils/_http.py, utils/_pagination.py), enough for snapshot_download and hf_hub_download:
  GET  /api/{models|datasets}/{org}/{name}[/revision/{rev}]  repo_info: id, sha (the commit), siblings (rfilename;
       with ?blobs=true also size, blobId, lfs {sha256, size, pointerSize}), private, gated, disabled, lastModified …
       The revision is one URL segment (huggingface_hub quotes it with safe="").
  GET  /api/{models|datasets}/{org}/{name}/tree/{rev}[/{path}]?recursive=…&expand=…  list_repo_tree: a JSON list of
       {"type": "file", "oid", "size", "path", "lfs": {"oid", "size", "pointerSize"}} and {"type": "directory", …};
       one page (no Link header; huggingface_hub follows Link rel="next" when present).
  POST /api/{models|datasets}/{org}/{name}/paths-info/{rev}  get_paths_info (form field paths), same entries.
  HEAD|GET /{org}/{name}/resolve/{rev}/{file} and /datasets/{org}/{name}/resolve/{rev}/{file}:
       regular file: 200 with X-Repo-Commit, ETag "<git blob id>", Content-Length (the body on GET, Range honoured);
       LFS file: 302 with X-Repo-Commit, X-Linked-Etag "<sha256>", X-Linked-Size, ETag and an absolute Location on the
       CDN (huggingface_hub's HEAD follows only relative redirects, then downloads from Location);
       errors: 404 with X-Error-Code RepoNotFound, RevisionNotFound or EntryNotFound (and X-Repo-Commit for entries).
  HEAD|GET CDN /lfs/{sha256}: 200 (206 for a Range) with Content-Length, ETag, Accept-Ranges, Content-Disposition.
Not imitated: Xet storage (no X-Xet-Hash headers, HF_HUB_DISABLE_XET=1), gated or private repositories, tokens,
pagination, spaces/kernels/buckets, uploads.
"""
import argparse
import base64
import hashlib
import http.server
import io
import json
import os
import platform
import shutil
import struct
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request

MODEL_ID = "tiny-org/tiny-model"
DATASET_ID = "tiny-org/tiny-dataset"
MODEL_COMMIT = hashlib.sha1(b"Mistral.NET python cache fixture: model").hexdigest()
DATASET_COMMIT = hashlib.sha1(b"Mistral.NET python cache fixture: dataset").hexdigest()

# tests/fixtures/eval-data/newsgroups_sample.parquet (879 bytes, written by hyparquet-writer; columns text, label):
# a real Parquet file, so the C# test can read the Python-downloaded dataset with Mistral.Eval's reader.
NEWSGROUPS_SAMPLE_PARQUET = base64.b64decode(
    "UEFSMRUGFTAVJFwVBhUAFQYVABUAFQAAABgAAA0BAAENCBwCAAAAAAAAABUGFaIBFagBXBUGFQIVBhUAFQQVAAAAAwVP8E4fAAAAVGhlIHNodXR0"
    + "bGUgbGF1bmNoIHdhcyBkZWxheWVkLigAAADDnG7Dr2PDtmTDqSwgInF1b3RlcyIKYW5kIGEgbmV3bGluZSDwn5iAFQYVVhVYXBUGFQAVBhUAFQQV"
    + "AAAAAwcpMAkAAABzY2kuc3BhY2UBDVxyZWMuYXV0b3MLAAAAYWx0LmF0aGVpc20VBhUgFSRcFQQVABUEFQAVABUAAAAQPAMAAAAAAAAABAAAAAAA"
    + "AAAVBhVgFWRcFQQVABUEFQAVBBUAAAADAy60GQAAAE15IFY4IG5lZWRzIGEgbmV3IGdhc2tldC4NAAAATm8gbGFiZWwgaGVyZRUGFR4VIlwVBBUC"
    + "FQQVABUEFQAAAAMBDTAJAAAAcmVjLmF1dG9zFQQZTEgEcm9vdBUGABUEJQAYAmlkABUMJQIYBHRleHQlAAAVDCUCGAVsYWJlbCUAABYKGSwZPCYI"
    + "HBUEGRUAGRgCaWQVAhYGFloWTiYIPDYAKAgCAAAAAAAAABgIAAAAAAAAAAAAGRwVBhUAFQIAAAAmVhwVDBkVABkYBHRleHQVAhYGFtABFtYBJlY8"
    + "NgIoEMOcbsOvY8O2ZMOpLCAicXYYEFRoZSBzaHV0dGxlIGxhdW4SEgAZHBUGFQAVAgAAACasAhwVDBkVABkYBWxhYmVsFQIWBhaAARaCASasAjw2"
    + "ACgJc2NpLnNwYWNlGAthbHQuYXRoZWlzbQAZHBUGFQAVAgAAABaqAxYGNqYDABk8Jq4DHBUEGRUAGRgCaWQVAhYEFkoWTiauAzw2ACgIBAAAAAAA"
    + "AAAYCAMAAAAAAAAAABkcFQYVABUCAAAAJvwDHBUMGRUAGRgEdGV4dBUCFgQWigEWjgEm/AM8NgAoDU5vIGxhYmVsIGhlcmUYEE15IFY4IG5lZWRz"
    + "IGEgbmUiABkcFQYVABUCAAAAJooFHBUMGRUAGRgFbGFiZWwVAhYEFkgWTCaKBTw2AigJcmVjLmF1dG9zGAlyZWMuYXV0b3MAGRwVBhUAFQIAAAAW"
    + "nAIWBDaoAgAoCWh5cGFycXVldBk8HAAAHAAAHAAAAPwBAABQQVIx")


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(content: bytes) -> bytes:
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
            % (hashlib.sha256(content).hexdigest(), len(content))).encode()


def tiny_safetensors() -> bytes:
    """A real safetensors file: one float32 tensor 'weight' [16, 64] holding i / 1024."""
    n = 16 * 64
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "weight": {"dtype": "F32", "shape": [16, 64], "data_offsets": [0, 4 * n]}},
                        separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack("<%df" % n, *[i / 1024 for i in range(n)])


def deterministic_bytes(seed: bytes, n: int) -> bytes:
    out, block = bytearray(), seed
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


class FakeFile:
    def __init__(self, path: str, content: bytes, lfs: bool):
        self.path, self.content, self.lfs = path, content, lfs
        self.sha256 = hashlib.sha256(content).hexdigest()
        self.git_blob_id = git_blob_id(content)
        self.pointer = lfs_pointer(content) if lfs else None
        # The git object the tree lists: the pointer file for LFS files, the content otherwise.
        self.oid = git_blob_id(self.pointer) if lfs else self.git_blob_id
        self.etag = self.sha256 if lfs else self.git_blob_id

    def manifest(self) -> dict:
        return {"path": self.path, "size": len(self.content), "sha256": self.sha256, "git_blob_id": self.git_blob_id,
                "lfs": self.lfs, "etag": self.etag}


class FakeRepo:
    def __init__(self, kind: str, repo_id: str, commit: str, files: list, tags: dict):
        self.kind, self.repo_id, self.commit, self.files, self.tags = kind, repo_id, commit, files, tags

    def resolve(self, revision: str):
        if revision in ("main", self.commit):
            return self.commit
        return self.commit if revision in self.tags else None

    def file(self, path: str):
        return next((f for f in self.files if f.path == path), None)


def make_repos() -> list:
    config = json.dumps({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 64,
                         "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
                         "num_key_value_heads": 2, "vocab_size": 16, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
                         "sliding_window": 64, "max_position_embeddings": 128, "tie_word_embeddings": False,
                         "torch_dtype": "float32"}, indent=2).encode() + b"\n"
    model = FakeRepo("models", MODEL_ID, MODEL_COMMIT, [
        FakeFile(".gitattributes", b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.model filter=lfs diff=lfs merge=lfs -text\n", False),
        FakeFile("README.md", b"# tiny-model\n\nA fixture of Mistral.NET's Hub interop test.\n", False),
        FakeFile("config.json", config, False),
        FakeFile("model.safetensors", tiny_safetensors(), True),
        FakeFile("tokenizer.model", deterministic_bytes(b"Mistral.NET fixture tokenizer", 3000), True),
    ], tags={"v1.0": MODEL_COMMIT})
    dataset = FakeRepo("datasets", DATASET_ID, DATASET_COMMIT, [
        FakeFile(".gitattributes", b"*.parquet filter=lfs diff=lfs merge=lfs -text\n", False),
        FakeFile("README.md", b"---\nlicense: mit\n---\n# tiny-dataset\n", False),
        FakeFile("data/train-00000-of-00001.parquet", NEWSGROUPS_SAMPLE_PARQUET, True),
    ], tags={})
    return [model, dataset]


class FakeHub:
    """The two loopback servers and what they saw."""

    def __init__(self, repos: list):
        self.repos = repos
        self.requests = []
        self.unexpected = []
        self.lock = threading.Lock()
        self.hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        self.cdn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler("cdn"))
        self.hub.daemon_threads = self.cdn.daemon_threads = True
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.hub, self.cdn)]
        for t in self.threads:
            t.start()

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d" % self.hub.server_address[1]

    @property
    def cdn_base(self) -> str:
        return "http://127.0.0.1:%d" % self.cdn.server_address[1]

    def close(self):
        for s in (self.hub, self.cdn):
            s.shutdown()
            s.server_close()

    def record(self, server, method, path, status, headers):
        with self.lock:
            self.requests.append({"server": server, "method": method, "path": path, "status": status,
                                  "range": headers.get("Range"), "authorization": headers.get("Authorization") is not None})

    def _handler(self, server_name: str):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "FakeHub/1.0"

            def log_message(self, fmt, *args):  # recorded in FakeHub.requests instead of stderr
                pass

            def do_HEAD(self):
                self._dispatch(head=True)

            def do_GET(self):
                self._dispatch(head=False)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                self._dispatch(head=False, body=body)

            def _dispatch(self, head, body=b""):
                try:
                    status = (hub._serve_cdn if server_name == "cdn" else hub._serve_hub)(self, head, body)
                except Exception as e:  # noqa: BLE001 - reported, never fatal to the server
                    traceback.print_exc()
                    status = 500
                    try:
                        send(self, 500, {"Content-Type": "text/plain"}, ("server error: %r" % e).encode(), head)
                    except Exception:  # noqa: BLE001
                        pass
                hub.record(server_name, self.command, self.path, status, self.headers)

        return Handler

    # --- the Hub -------------------------------------------------------------------------------------------------
    def _serve_hub(self, h, head, body):
        split = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(split.query)
        # Segments are unquoted one by one, so a revision quoted with safe="" (refs%2Fpr%2F1) stays one segment.
        segs = [urllib.parse.unquote(s) for s in split.path.split("/")[1:]]
        if len(segs) >= 4 and segs[0] == "api" and segs[1] in ("models", "datasets"):
            return self._serve_api(h, head, segs, query, body)
        kind = "models"
        if segs and segs[0] == "datasets":
            kind, segs = "datasets", segs[1:]
        if len(segs) >= 5 and segs[2] == "resolve":
            return self._serve_resolve(h, head, kind, "/".join(segs[:2]), segs[3], "/".join(segs[4:]))
        return self._unexpected(h, head)

    def _repo(self, kind, repo_id):
        return next((r for r in self.repos if r.kind == kind and r.repo_id == repo_id), None)

    def _serve_api(self, h, head, segs, query, body):
        kind, repo_id, rest = segs[1], "/".join(segs[2:4]), segs[4:]
        repo = self._repo(kind, repo_id)
        if repo is None:
            return error(h, 404, "RepoNotFound", "Repository not found", head)
        if not rest or rest[0] == "revision":
            revision = rest[1] if len(rest) > 1 else "main"
            commit = repo.resolve(revision)
            if commit is None:
                return error(h, 404, "RevisionNotFound", "Invalid rev id: %s" % revision, head)
            blobs = query.get("blobs", ["false"])[0].lower() in ("true", "1")
            return send_json(h, 200, self._info(repo, blobs), head)
        if rest[0] == "tree" and len(rest) >= 2:
            commit = repo.resolve(rest[1])
            if commit is None:
                return error(h, 404, "RevisionNotFound", "Invalid rev id: %s" % rest[1], head)
            prefix = "/".join(rest[2:]).strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            entries = self._tree(repo, prefix, recursive)
            if prefix and not entries and repo.file(prefix) is None:
                return error(h, 404, "EntryNotFound", "%s does not exist on %s" % (prefix, rest[1]), head)
            return send_json(h, 200, entries, head)
        if rest[0] == "paths-info" and len(rest) >= 2:
            commit = repo.resolve(rest[1])
            if commit is None:
                return error(h, 404, "RevisionNotFound", "Invalid rev id: %s" % rest[1], head)
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            wanted = set(form.get("paths", []))
            try:
                parsed = json.loads(body) if body[:1] == b"{" else None
                if parsed and isinstance(parsed.get("paths"), list):
                    wanted |= set(parsed["paths"])
            except ValueError:
                pass
            entries = [e for e in self._tree(repo, "", True) if e["path"] in wanted]
            return send_json(h, 200, entries, head)
        if rest[0] == "refs":
            return send_json(h, 200, {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit}],
                                      "converts": [], "tags": [{"name": t, "ref": "refs/tags/" + t, "targetCommit": c}
                                                               for t, c in repo.tags.items()]}, head)
        return self._unexpected(h, head)

    def _info(self, repo, blobs):
        siblings = []
        for f in repo.files:
            s = {"rfilename": f.path}
            if blobs:
                s.update({"size": len(f.content), "blobId": f.oid})
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": len(f.content), "pointerSize": len(f.pointer)}
            siblings.append(s)
        org = repo.repo_id.split("/")[0]
        info = {"_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id, "author": org,
                "sha": repo.commit, "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
                "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": siblings, "usedStorage": sum(len(f.content) for f in repo.files)}
        if repo.kind == "models":
            info["modelId"] = repo.repo_id
        return info

    def _tree(self, repo, prefix, recursive):
        base = prefix + "/" if prefix else ""
        entries, folders = [], set()
        for f in sorted(repo.files, key=lambda f: f.path):
            if not f.path.startswith(base):
                continue
            rel = f.path[len(base):]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                folders.add(base + "/".join(parts[:i]))
            if "/" in rel and not recursive:
                continue
            e = {"type": "file", "oid": f.oid, "size": len(f.content), "path": f.path}
            if f.lfs:
                e["lfs"] = {"oid": f.sha256, "size": len(f.content), "pointerSize": len(f.pointer)}
            entries.append(e)
        for d in sorted(folders):
            if recursive or "/" not in d[len(base):]:
                entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
        return sorted(entries, key=lambda e: e["path"])

    def _serve_resolve(self, h, head, kind, repo_id, revision, path):
        repo = self._repo(kind, repo_id)
        if repo is None:
            return error(h, 404, "RepoNotFound", "Repository not found", head)
        commit = repo.resolve(revision)
        if commit is None:
            return error(h, 404, "RevisionNotFound", "Invalid rev id: %s" % revision, head)
        f = repo.file(path)
        if f is None:
            return error(h, 404, "EntryNotFound", "Entry not found", head, {"X-Repo-Commit": commit})
        headers = {"X-Repo-Commit": commit, "Vary": "Origin, Accept-Encoding", "Access-Control-Expose-Headers":
                   "X-Repo-Commit,X-Linked-Etag,X-Linked-Size,ETag,Location"}
        if f.lfs:
            headers.update({"X-Linked-Etag": '"%s"' % f.sha256, "X-Linked-Size": str(len(f.content)),
                            "ETag": '"%s"' % f.oid,
                            "Location": "%s/lfs/%s?download=true&expires=1900000000&signature=fixture" % (self.cdn_base, f.sha256),
                            "Content-Type": "text/plain; charset=utf-8"})
            return send(h, 302, headers, b"", head)
        headers.update({"ETag": '"%s"' % f.git_blob_id, "Content-Type": "application/octet-stream"})
        return send_content(h, f.content, headers, head)

    # --- the CDN -------------------------------------------------------------------------------------------------
    def _serve_cdn(self, h, head, body):
        split = urllib.parse.urlsplit(h.path)
        segs = split.path.split("/")[1:]
        if len(segs) == 2 and segs[0] == "lfs":
            hit = next(((r, f) for r in self.repos for f in r.files if f.lfs and f.sha256 == segs[1]), None)
            if hit is not None:
                r, f = hit
                # huggingface_hub versions that follow the redirect on HEAD read the Hub's headers from this response:
                # repeat them (harmless for those that stop at the 302).
                return send_content(h, f.content, {"ETag": '"%s"' % f.sha256, "Content-Type": "application/octet-stream",
                                                   "X-Repo-Commit": r.commit, "X-Linked-Etag": '"%s"' % f.sha256,
                                                   "X-Linked-Size": str(len(f.content)),
                                                   "Content-Disposition": 'attachment; filename="%s";' % f.path.split("/")[-1]},
                                    head)
        return self._unexpected(h, head)

    def _unexpected(self, h, head):
        with self.lock:
            self.unexpected.append("%s %s" % (h.command, h.path))
        return error(h, 404, "EntryNotFound", "the fixture's fake Hub does not serve %s" % h.path, head)


def send(h, status, headers, body, head):
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if not head and body:
        h.wfile.write(body)
    return status


def send_json(h, status, obj, head):
    return send(h, status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(obj).encode(), head)


def error(h, status, code, message, head, extra=None):
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Code": code, "X-Error-Message": message}
    headers.update(extra or {})
    return send(h, status, headers, json.dumps({"error": message}).encode(), head)


def send_content(h, content, headers, head):
    headers = dict(headers, **{"Accept-Ranges": "bytes"})
    rng = h.headers.get("Range")
    if rng and rng.startswith("bytes="):
        first, _, last = rng[6:].split(",")[0].partition("-")
        try:
            start = int(first) if first else max(0, len(content) - int(last))
            end = int(last) if first and last else len(content) - 1
        except ValueError:
            start, end = 0, len(content) - 1
        if start >= len(content):
            return send(h, 416, dict(headers, **{"Content-Range": "bytes */%d" % len(content)}), b"", head)
        end = min(end, len(content) - 1)
        headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, len(content))
        return send(h, 206, headers, content[start:end + 1], head)
    return send(h, 200, headers, content, head)


# --- the run --------------------------------------------------------------------------------------------------------
def configure_environment(endpoint: str, cache: str, home: str):
    """What huggingface_hub reads at import: set before importing it."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
                 "HUGGINGFACE_CO_STAGING", "HF_HUB_ENABLE_HF_TRANSFER", "HF_TOKEN_PATH", "HF_HUB_CACHE",
                 "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE"):
        os.environ.pop(name, None)
    no_proxy = ",".join(x for x in ("127.0.0.1", "localhost", os.environ.get("NO_PROXY", "")) if x)
    os.environ.update({
        "HF_ENDPOINT": endpoint,
        "HF_HOME": home,
        "HF_HUB_CACHE": cache,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_SYMLINKS_WARNING": "1",
        "HF_HUB_ETAG_TIMEOUT": "30",
        "HF_HUB_DOWNLOAD_TIMEOUT": "60",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    })


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def failure(step: str, e: BaseException) -> dict:
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    print("---- %s failed ----\n%s" % (step, text), file=sys.stderr, flush=True)
    return {"step": step, "error": "%s: %s" % (type(e).__name__, e), "traceback": text}


def download(hf, repo: FakeRepo, cache: str, endpoint: str, errors: list) -> str:
    """snapshot_download, else hf_hub_download file by file; returns which call wrote the repository (or 'failed')."""
    repo_type = "dataset" if repo.kind == "datasets" else "model"
    try:
        path = hf.snapshot_download(repo_id=repo.repo_id, repo_type=repo_type, revision="main", cache_dir=cache,
                                    endpoint=endpoint, max_workers=2, etag_timeout=30)
        print("snapshot_download(%s, %s) -> %s" % (repo.repo_id, repo_type, path), flush=True)
        return "snapshot_download"
    except Exception as e:  # noqa: BLE001
        errors.append(failure("snapshot_download %s %s" % (repo_type, repo.repo_id), e))
    ok = True
    for f in repo.files:
        try:
            path = hf.hf_hub_download(repo_id=repo.repo_id, filename=f.path, repo_type=repo_type, revision="main",
                                      cache_dir=cache, endpoint=endpoint, etag_timeout=30)
            print("hf_hub_download(%s, %s) -> %s" % (repo.repo_id, f.path, path), flush=True)
        except Exception as e:  # noqa: BLE001
            ok = False
            errors.append(failure("hf_hub_download %s %s %s" % (repo_type, repo.repo_id, f.path), e))
    return "hf_hub_download" if ok else "failed"


def check_repo(hf, repo: FakeRepo, cache: str, revisions: list, problems: list) -> dict:
    repo_type = "dataset" if repo.kind == "datasets" else "model"
    folder = os.path.join(cache, "%s--%s" % (repo.kind, repo.repo_id.replace("/", "--")))
    snapshot = os.path.join(folder, "snapshots", repo.commit)
    seen = {}
    for rev in revisions:
        ref = os.path.join(folder, "refs", rev)
        if not os.path.isfile(ref):
            problems.append("%s: no refs/%s" % (repo.repo_id, rev))
            continue
        with open(ref) as r:
            got = r.read()
        if got != repo.commit:
            problems.append("%s: refs/%s holds %r, expected %s" % (repo.repo_id, rev, got, repo.commit))
    for f in repo.files:
        pointer = os.path.join(snapshot, *f.path.split("/"))
        entry = {"exists": os.path.exists(pointer), "symlink": os.path.islink(pointer)}
        if not entry["exists"]:
            problems.append("%s: %s missing from the snapshot" % (repo.repo_id, f.path))
        else:
            entry["link"] = os.readlink(pointer) if entry["symlink"] else None
            entry["sha256"] = sha256_file(pointer)
            if entry["sha256"] != f.sha256:
                problems.append("%s: %s has SHA-256 %s, served %s" % (repo.repo_id, f.path, entry["sha256"], f.sha256))
            if entry["symlink"]:
                target = os.path.realpath(pointer)
                if os.path.dirname(target) != os.path.realpath(os.path.join(folder, "blobs")) or os.path.basename(target) != f.etag:
                    problems.append("%s: %s links to %s, expected blobs/%s" % (repo.repo_id, f.path, entry["link"], f.etag))
            else:
                print("note: %s/%s is not a symlink (symlinks unsupported here?)" % (repo.repo_id, f.path), flush=True)
        seen[f.path] = entry
    try:
        offline = hf.snapshot_download(repo_id=repo.repo_id, repo_type=repo_type, revision="main", cache_dir=cache,
                                       local_files_only=True)
        if os.path.realpath(offline) != os.path.realpath(snapshot):
            problems.append("%s: local_files_only snapshot_download gave %s, expected %s" % (repo.repo_id, offline, snapshot))
    except Exception as e:  # noqa: BLE001
        problems.append("%s: local_files_only snapshot_download raised %s: %s" % (repo.repo_id, type(e).__name__, e))
        failure("local_files_only snapshot_download %s" % repo.repo_id, e)
    return seen


def write_archive(out: str, cache: str, manifest: dict):
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    tmp = out + ".tmp"
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(data))
        if os.path.isdir(cache):
            tar.add(cache, arcname="hub", recursive=True)  # symlinks stay symlinks (dereference=False)
    os.replace(tmp, out)


def run(out: str, keep: str) -> int:
    work = tempfile.mkdtemp(prefix="python-hub-cache-")
    cache, home = os.path.join(work, "hub"), os.path.join(work, "hf-home")
    os.makedirs(home)
    repos = make_repos()
    server = FakeHub(repos)
    configure_environment(server.endpoint, cache, home)
    errors, problems = [], []
    manifest = {"format": 1, "cache_folder": "hub", "endpoint": server.endpoint, "cdn": server.cdn_base,
                "python": sys.version.split()[0], "platform": platform.platform(), "errors": errors, "problems": problems}
    try:
        import huggingface_hub as hf  # noqa: E402 - HF_ENDPOINT must be set first
        manifest["huggingface_hub_version"] = hf.__version__
        print("huggingface_hub %s, endpoint %s, cache %s" % (hf.__version__, server.endpoint, cache), flush=True)
        try:
            import httpx
            manifest["httpx_version"] = httpx.__version__
        except Exception:  # noqa: BLE001
            pass
    except Exception as e:  # noqa: BLE001
        errors.append(failure("import huggingface_hub", e))
        hf = None
    entries = []
    for repo in repos:
        revisions = ["main"]
        method = download(hf, repo, cache, server.endpoint, errors) if hf else "failed"
        if hf and repo.tags:
            for tag in repo.tags:
                try:
                    hf.hf_hub_download(repo_id=repo.repo_id, filename="config.json",
                                       repo_type="dataset" if repo.kind == "datasets" else "model", revision=tag,
                                       cache_dir=cache, endpoint=server.endpoint, etag_timeout=30)
                    revisions.append(tag)
                except Exception as e:  # noqa: BLE001
                    errors.append(failure("hf_hub_download %s config.json @%s" % (repo.repo_id, tag), e))
        if method == "failed":
            problems.append("%s: not downloaded" % repo.repo_id)
        seen = check_repo(hf, repo, cache, revisions, problems) if hf else {}
        entries.append({"repo_type": "dataset" if repo.kind == "datasets" else "model", "repo_id": repo.repo_id,
                        "cache_folder": "%s--%s" % (repo.kind, repo.repo_id.replace("/", "--")), "commit": repo.commit,
                        "revisions": revisions, "method": method, "files": [f.manifest() for f in repo.files],
                        "downloaded": seen})
    manifest["repos"] = entries
    if hf is not None:
        try:
            report = hf.scan_cache_dir(cache)
            manifest["scan_cache_dir"] = {"repos": sorted("%s %s" % (r.repo_type, r.repo_id) for r in report.repos),
                                          "warnings": [str(w) for w in report.warnings]}
            problems.extend("scan_cache_dir: %s" % w for w in report.warnings)
        except Exception as e:  # noqa: BLE001
            errors.append(failure("scan_cache_dir", e))
    server.close()
    manifest["requests"] = server.requests
    manifest["unexpected_requests"] = server.unexpected
    manifest["tree"] = sorted(os.path.relpath(os.path.join(d, n), work).replace(os.sep, "/") + (" -> " + os.readlink(os.path.join(d, n)) if os.path.islink(os.path.join(d, n)) else "")
                              for d, dirs, names in os.walk(cache) for n in names + [x for x in dirs if os.path.islink(os.path.join(d, x))]) if os.path.isdir(cache) else []
    manifest["ok"] = not problems and all(e["method"] != "failed" for e in entries) and hf is not None
    print(json.dumps(manifest, indent=2, sort_keys=True), flush=True)
    if os.path.isdir(cache):
        write_archive(out, cache, manifest)
        print("wrote %s (%d bytes); ok=%s" % (out, os.path.getsize(out), manifest["ok"]), flush=True)
    else:
        print("no cache folder was written; nothing archived", flush=True)
    if keep:
        shutil.copytree(work, keep, symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if manifest["ok"] else 1


def self_test() -> int:
    """The fake Hub alone, through urllib (no redirects followed): what huggingface_hub's calls will see."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())

    def call(method, url, headers=None, data=None):
        req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    repos = make_repos()
    hub = FakeHub(repos)
    failures = []

    def expect(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    try:
        ep, model, data = hub.endpoint, repos[0], repos[1]
        s, h, b = call("GET", ep + "/api/models/%s/revision/main" % MODEL_ID)
        info = json.loads(b)
        expect(s == 200 and info["sha"] == MODEL_COMMIT and info["id"] == MODEL_ID, "model info at main")
        expect(sorted(x["rfilename"] for x in info["siblings"]) == sorted(f.path for f in model.files), "siblings")
        s, h, b = call("GET", ep + "/api/datasets/%s/revision/%s?blobs=true" % (DATASET_ID, DATASET_COMMIT))
        info = json.loads(b)
        lfs = [x for x in info["siblings"] if x.get("lfs")]
        expect(s == 200 and info["sha"] == DATASET_COMMIT and lfs and lfs[0]["lfs"]["sha256"] == data.files[2].sha256, "dataset info by commit, blobs")
        s, h, b = call("GET", ep + "/api/models/%s/revision/v1.0" % MODEL_ID)
        expect(s == 200 and json.loads(b)["sha"] == MODEL_COMMIT, "a tag resolves")
        s, h, b = call("GET", ep + "/api/models/%s/revision/nope" % MODEL_ID)
        expect(s == 404 and h.get("X-Error-Code") == "RevisionNotFound", "unknown revision: 404 RevisionNotFound")
        s, h, b = call("GET", ep + "/api/models/tiny-org/absent/revision/main")
        expect(s == 404 and h.get("X-Error-Code") == "RepoNotFound", "unknown repo: 404 RepoNotFound")
        s, h, b = call("GET", ep + "/api/datasets/%s/tree/%s?recursive=true&expand=false" % (DATASET_ID, DATASET_COMMIT))
        tree = json.loads(b)
        files = [e for e in tree if e["type"] == "file"]
        expect(s == 200 and sorted(e["path"] for e in files) == sorted(f.path for f in data.files), "recursive tree lists every file")
        expect(any(e["type"] == "directory" and e["path"] == "data" for e in tree), "recursive tree lists folders")
        pq = next(e for e in files if e["path"].endswith(".parquet"))
        expect(pq["lfs"]["oid"] == data.files[2].sha256 and pq["size"] == len(NEWSGROUPS_SAMPLE_PARQUET), "tree LFS entry")
        s, h, b = call("GET", ep + "/api/datasets/%s/tree/main?recursive=false" % DATASET_ID)
        expect(s == 200 and sorted(e["path"] for e in json.loads(b)) == [".gitattributes", "README.md", "data"], "flat tree")
        s, h, b = call("POST", ep + "/api/models/%s/paths-info/main" % MODEL_ID, {"Content-Type": "application/x-www-form-urlencoded"},
                       urllib.parse.urlencode({"paths": ["config.json", "model.safetensors"], "expand": "false"}, doseq=True).encode())
        expect(s == 200 and sorted(e["path"] for e in json.loads(b)) == ["config.json", "model.safetensors"], "paths-info")
        cfg = model.file("config.json")
        s, h, b = call("HEAD", ep + "/%s/resolve/main/config.json" % MODEL_ID)
        expect(s == 200 and h.get("X-Repo-Commit") == MODEL_COMMIT and h.get("ETag") == '"%s"' % cfg.git_blob_id
               and int(h.get("Content-Length")) == len(cfg.content) and b == b"", "HEAD regular file")
        s, h, b = call("GET", ep + "/%s/resolve/%s/config.json" % (MODEL_ID, MODEL_COMMIT))
        expect(s == 200 and b == cfg.content, "GET regular file by commit")
        st = model.file("model.safetensors")
        s, h, b = call("HEAD", ep + "/%s/resolve/main/model.safetensors" % MODEL_ID)
        loc = h.get("Location", "")
        expect(s == 302 and h.get("X-Linked-Etag") == '"%s"' % st.sha256 and h.get("X-Linked-Size") == str(len(st.content))
               and loc.startswith(hub.cdn_base + "/lfs/"), "HEAD LFS file: 302 to the CDN with X-Linked-*")
        expect(urllib.parse.urlsplit(loc).netloc != urllib.parse.urlsplit(ep).netloc, "the CDN is another host:port")
        s, h, b = call("GET", loc)
        expect(s == 200 and hashlib.sha256(b).hexdigest() == st.sha256, "CDN serves the LFS content")
        s, h, b = call("GET", loc, {"Range": "bytes=100-"})
        expect(s == 206 and b == st.content[100:] and h.get("Content-Range") == "bytes 100-%d/%d" % (len(st.content) - 1, len(st.content)), "CDN Range")
        s, h, b = call("GET", loc, {"Range": "bytes=%d-" % len(st.content)})
        expect(s == 416, "Range past the end: 416")
        pq = data.files[2]
        s, h, b = call("HEAD", ep + "/datasets/%s/resolve/main/%s" % (DATASET_ID, urllib.parse.quote(pq.path)))
        expect(s == 302 and h.get("X-Linked-Etag") == '"%s"' % pq.sha256, "dataset resolve under /datasets/")
        s, h, b = call("HEAD", ep + "/%s/resolve/main/absent.bin" % MODEL_ID)
        expect(s == 404 and h.get("X-Error-Code") == "EntryNotFound" and h.get("X-Repo-Commit") == MODEL_COMMIT, "missing file: 404 EntryNotFound")
        s, h, b = call("GET", ep + "/somewhere/else")
        expect(s == 404 and hub.unexpected == ["GET /somewhere/else"], "unexpected requests are recorded")
        header_len = struct.unpack("<Q", st.content[:8])[0]
        expect(json.loads(st.content[8:8 + header_len])["weight"]["shape"] == [16, 64] and len(st.content) == 8 + header_len + 4096, "a real safetensors file")
        expect(NEWSGROUPS_SAMPLE_PARQUET[:4] == b"PAR1" and NEWSGROUPS_SAMPLE_PARQUET[-4:] == b"PAR1" and len(NEWSGROUPS_SAMPLE_PARQUET) == 879, "the Parquet sample")
    finally:
        hub.close()
    print("self-test: %s" % ("passed" if not failures else "%d FAILED" % len(failures)))
    return 0 if not failures else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="the archive to write, e.g. $OUT/python_hub_cache.tar.gz")
    ap.add_argument("--keep", help="also copy the working folder (cache and HF_HOME) here")
    ap.add_argument("--self-test", action="store_true", help="check the fake Hub with urllib only, then exit")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.out:
        ap.print_usage(sys.stderr)
        return 2
    try:
        return run(args.out, args.keep)
    except Exception as e:  # noqa: BLE001
        failure("run", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
