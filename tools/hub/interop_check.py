#!/usr/bin/env python3
"""Checks that Python's huggingface_hub reads a cache folder written by Mistral.Hub (HubClient).

Usage:
    python tools/hub/interop_check.py --cache /path/to/hub-cache --repo org/name [--repo-type model|dataset] [--revision main]

It never touches the network (HF_HUB_OFFLINE=1 and local_files_only=True). It
  1. resolves the snapshot with snapshot_download(..., local_files_only=True),
  2. lists the snapshot's files (size, SHA-256, and whether it is a symlink into blobs/),
  3. checks each LFS blob's name (64 hex digits) against the SHA-256 of its content,
  4. runs scan_cache_dir() on the cache and reports its warnings (a malformed layout shows up there).
It prints one JSON object and exits 0 when everything holds, 1 otherwise.
"""
import argparse
import hashlib
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

from huggingface_hub import scan_cache_dir, snapshot_download  # noqa: E402


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="the hub cache folder (what HF_HUB_CACHE points to)")
    ap.add_argument("--repo", required=True, help="repository id, e.g. mistralai/Mistral-7B-v0.1")
    ap.add_argument("--repo-type", default="model", choices=["model", "dataset"])
    ap.add_argument("--revision", default="main")
    args = ap.parse_args()

    problems = []
    snapshot = snapshot_download(
        repo_id=args.repo, repo_type=args.repo_type, revision=args.revision,
        cache_dir=args.cache, local_files_only=True)

    files = []
    for root, _, names in os.walk(snapshot):
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, snapshot).replace(os.sep, "/")
            target = os.readlink(path) if os.path.islink(path) else None
            digest = sha256(path)
            blob = os.path.basename(target) if target else None
            if target is None:
                problems.append(f"{rel}: not a symlink into blobs/")
            elif "/blobs/" not in target.replace(os.sep, "/") or os.path.isabs(target):
                problems.append(f"{rel}: symlink target {target} is not a relative path into blobs/")
            if blob and len(blob) == 64 and blob != digest:
                problems.append(f"{rel}: blob {blob} has SHA-256 {digest}")
            files.append({"file": rel, "size": os.path.getsize(path), "sha256": digest, "link": target})

    info = scan_cache_dir(args.cache)
    warnings = [str(w) for w in info.warnings]
    problems += [f"scan_cache_dir: {w}" for w in warnings]
    repos = [
        {"repo_id": r.repo_id, "repo_type": r.repo_type, "size_on_disk": r.size_on_disk,
         "revisions": sorted(rev.commit_hash for rev in r.revisions), "refs": sorted(r.refs)}
        for r in info.repos
    ]

    print(json.dumps({"snapshot": snapshot, "files": sorted(files, key=lambda f: f["file"]),
                      "cache_repos": repos, "problems": problems}, indent=2))
    return 1 if problems or not files else 0


if __name__ == "__main__":
    sys.exit(main())
