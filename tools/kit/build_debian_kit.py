#!/usr/bin/python3
"""Builds the kit's two small real datasets from Debian bookworm's archive metadata.

  classification  (the 20 Newsgroups stand-in)  text = a package's long description, label = its archive section
  summarization   (the Samsum stand-in)         dialogue = the long description, summary = the synopsis

Input: the apt lists of Debian bookworm `main` (amd64), fetched on a Debian 12 machine with
    apt-get -o Acquire::Languages=en update
  <lists>/*_debian_dists_bookworm_InRelease                 snapshot date and SHA-256 of every index
  <lists>/*_debian_dists_bookworm_main_binary-amd64_Packages[.lz4|.xz|.gz|.bz2|.zst]   Section, Source, Description-md5
  <lists>/*_debian_dists_bookworm_main_i18n_Translation-en[...]                          Description-en
Only bookworm `main` is read (not bookworm-updates or bookworm-security). Both indexes are checked against the
SHA-256 that the (apt-verified, signed) InRelease lists for them; a mismatch is an error.

Steps (every drop is counted in manifest.json):
  1. Join Packages to Translation-en on (Package, Description-md5); check md5(Description-en + "\\n").
     Unique (Package, Description-md5) pairs; Source without its "(version)", the package's own name when absent;
     Section without a component prefix ("contrib/" etc.).
  2. Undo Debian's description format: the first line is the synopsis; every further line loses its one leading
     space, a " ." line becomes an empty line (paragraph break); trailing spaces are stripped.
  3. Keep long descriptions of MIN_CHARS..MAX_CHARS characters (shorter ones say nothing; longer ones are dropped,
     not truncated, so every text is a whole description).
  4. Drop exact and near-exact duplicate long descriptions: normalized = lowercase, every character of Unicode
     category P* (punctuation), N* (digits/numbers) or S* (symbols) removed, whitespace collapsed; the first in
     (source, package, md5) order is kept.
  5. Split BY SOURCE PACKAGE: the first 64 bits of sha256("<seed>/split/<source>") mod 100 → <80 train, <90 validation, else test;
     the same split serves both datasets, so no source is on two sides of either or across them.
  6. Classification: the 20 most frequent sections of the deduplicated pool (ties by name) are the labels.
  7. Subsample each split: rows ordered by sha256("<seed>/<task>/<package>"), at most PER_SOURCE rows per source,
     up to the split's size. Files keep that (shuffled) order. Every label must be in every classification split.
  8. Write JSONL to a temporary folder, convert to Parquet with tools/kit/ParquetWriter (Parquet.Net; Debian 12
     has no python3-pyarrow), then write manifest.json (inputs, parameters, counts, output SHA-256).

Deterministic: the same apt lists give byte-identical files. Run from the repository root:
    /usr/bin/python3 tools/kit/build_debian_kit.py [--corpus kit/corpus/train.jsonl]
--corpus also writes every kept description as JSONL ({"text": synopsis + newline + long description}, one per line) of
the TRAIN split's sources — before subsampling, all sections — as plain text for tokenizer training/pretraining;
no validation or test source contributes to it.
"""
import argparse
import bz2
import glob
import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections import Counter, defaultdict

SEED = 42
MIN_CHARS = 40
MAX_CHARS = 1500
NUM_LABELS = 20
PER_SOURCE = 4
SPLITS = ("train", "validation", "test")
SIZES = {
    "classification": {"train": 12000, "validation": 1000, "test": 1000},
    "summarization": {"train": 8000, "validation": 1000, "test": 1000},
}
COLUMNS = {
    "classification": ("text", "label"),
    "summarization": ("dialogue", "summary"),
}
COMPRESSIONS = ("", ".lz4", ".xz", ".gz", ".bz2", ".zst")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def fail(message):
    sys.exit(f"build_debian_kit: {message}")


def find_index(lists, pattern):
    """The one file for an index, in whichever compression apt stored it."""
    found = sorted(p for ext in COMPRESSIONS for p in glob.glob(os.path.join(lists, pattern + ext)))
    if len(found) != 1:
        fail(f"expected exactly one file matching {pattern}[{'|'.join(COMPRESSIONS[1:])}] in {lists}, found {found or 'none'}; "
             "run `apt-get -o Acquire::Languages=en update` (bookworm main in sources.list) or pass --lists/--mirror")
    return found[0]


def read_bytes(path):
    """The uncompressed bytes of an apt list file."""
    if path.endswith(".lz4") or path.endswith(".zst"):
        tool = "lz4" if path.endswith(".lz4") else "zstd"
        if shutil.which(tool) is None:
            fail(f"{path} needs the `{tool}` command (apt-get install {tool})")
        return subprocess.run([tool, "-dc", path], check=True, stdout=subprocess.PIPE).stdout
    opener = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}.get(os.path.splitext(path)[1], open)
    with opener(path, "rb") as f:
        return f.read()


def release_fields(text):
    """Date, Version, Suite, Codename and the SHA256 table of an (In)Release file."""
    fields, sha256, in_sha = {}, {}, False
    for line in text.splitlines():
        if line.startswith("-----BEGIN PGP SIGNATURE"):
            break
        if line.startswith(" ") and in_sha:
            digest, size, name = line.split()
            sha256[name] = (digest, int(size))
            continue
        in_sha = line.startswith("SHA256:")
        if ":" in line and not line.startswith(" "):
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields, sha256


def stanzas(text):
    """deb822 paragraphs as dicts; a value keeps its trailing spaces (Description-md5 covers them) and its
    continuation lines, joined with "\\n", each with its leading space."""
    for block in text.split("\n\n"):
        fields, key = {}, None
        for line in block.split("\n"):
            if not line:
                continue
            if line[0] in " \t":
                fields[key] += "\n" + line
            else:
                key, value = line.split(":", 1)
                fields[key] = value.lstrip(" \t")
        if fields:
            yield fields


def undo_description_format(description_en):
    """(synopsis, long description) from a Description-en field's value."""
    lines = description_en.split("\n")
    body = []
    for line in lines[1:]:
        line = line[1:].rstrip()  # the one leading space (or tab) of a continuation line
        body.append("" if line == "." else line)
    return lines[0].strip(), "\n".join(body).strip("\n")


def normalize(text):
    """The key for near-exact duplicates: lowercase, no punctuation/digits/symbols, whitespace collapsed."""
    kept = "".join(ch for ch in text.lower() if unicodedata.category(ch)[0] not in "PNS")
    return " ".join(kept.split())


def rank(*parts):
    return hashlib.sha256("/".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def split_of(source):
    bucket = int(rank(SEED, "split", source)[:16], 16) % 100
    return "train" if bucket < 80 else "validation" if bucket < 90 else "test"


def load(lists, mirror, arch):
    release_path = find_index(lists, f"{mirror}_dists_bookworm_InRelease")
    release_text = read_bytes(release_path).decode("utf-8")
    release, sha256 = release_fields(release_text)
    inputs = {"release": {"file": os.path.basename(release_path), "sha256": hashlib.sha256(release_text.encode("utf-8")).hexdigest(),
                          **{k: release.get(k) for k in ("Origin", "Suite", "Codename", "Version", "Date")}}}
    texts = {}
    for name, pattern, index in (("packages", f"{mirror}_dists_bookworm_main_binary-{arch}_Packages", f"main/binary-{arch}/Packages"),
                                 ("translation", f"{mirror}_dists_bookworm_main_i18n_Translation-en", "main/i18n/Translation-en")):
        path = find_index(lists, pattern)
        data = read_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        if index not in sha256:
            fail(f"{release_path} lists no SHA256 for {index}")
        if (digest, len(data)) != sha256[index]:
            fail(f"{path} (uncompressed {len(data)} bytes, sha256 {digest}) does not match {index} in {release_path} {sha256[index]}")
        inputs[name] = {"file": os.path.basename(path), "index": index, "sha256": digest, "bytes": len(data)}
        texts[name] = data.decode("utf-8")
    return inputs, texts["packages"], texts["translation"]


def build_pool(packages_text, translation_text, counts):
    translations = {}
    for t in stanzas(translation_text):
        translations[(t["Package"].strip(), t["Description-md5"].strip())] = t["Description-en"]
    counts["translation_entries"] = len(translations)

    pairs = {}
    stanza_count = 0
    for p in stanzas(packages_text):
        stanza_count += 1
        key = (p["Package"].strip(), p["Description-md5"].strip())
        source = p.get("Source", p["Package"]).split()[0]
        section = p.get("Section", "").strip()
        if key not in pairs or (source, section) < pairs[key][:2]:
            pairs[key] = (source, section)
    counts["packages_stanzas"] = stanza_count
    counts["package_description_pairs"] = len(pairs)

    dropped = Counter()
    rows = []
    for (package, md5), (source, section) in sorted(pairs.items(), key=lambda kv: (kv[1][0], kv[0][0], kv[0][1])):
        description = translations.get((package, md5))
        if description is None:
            dropped["no_translation_entry"] += 1
            continue
        if hashlib.md5((description + "\n").encode("utf-8")).hexdigest() != md5:
            dropped["description_md5_mismatch"] += 1
            continue
        if not section:
            dropped["no_section"] += 1
            continue
        synopsis, long_description = undo_description_format(description)
        if not long_description:
            dropped["no_long_description"] += 1
        elif len(long_description) < MIN_CHARS:
            dropped[f"long_description_under_{MIN_CHARS}_chars"] += 1
        elif len(long_description) > MAX_CHARS:
            dropped[f"long_description_over_{MAX_CHARS}_chars"] += 1
        elif not synopsis:
            dropped["empty_synopsis"] += 1
        else:
            rows.append({"package": package, "source": source, "section": section.split("/")[-1],
                         "synopsis": synopsis, "description": long_description})

    seen = set()
    pool = []
    for row in rows:
        key = normalize(row["description"])
        if key in seen:
            dropped["duplicate_description"] += 1
            continue
        seen.add(key)
        row["split"] = split_of(row["source"])
        pool.append(row)
    counts["dropped"] = dict(sorted(dropped.items()))
    counts["pool_rows"] = len(pool)
    counts["pool_rows_by_split"] = {s: sum(r["split"] == s for r in pool) for s in SPLITS}
    counts["pool_sources_by_split"] = {s: len({r["source"] for r in pool if r["split"] == s}) for s in SPLITS}
    return pool


def subsample(rows, task, size):
    per_source = Counter()
    chosen = []
    for row in sorted(rows, key=lambda r: rank(SEED, task, r["package"])):
        if len(chosen) == size:
            break
        if per_source[row["source"]] < PER_SOURCE:
            per_source[row["source"]] += 1
            chosen.append(row)
    return chosen


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lists", default="/var/lib/apt/lists", help="apt's lists folder (default %(default)s)")
    parser.add_argument("--mirror", default="*_debian", help="file-name prefix of the mirror (default %(default)s)")
    parser.add_argument("--arch", default="amd64", help="the Packages index to read (default %(default)s)")
    parser.add_argument("--out", default=os.path.join(ROOT, "kit", "data"), help="output folder (default kit/data)")
    parser.add_argument("--corpus", help="also write the train sources' descriptions as plain text to this file")
    args = parser.parse_args()

    inputs, packages_text, translation_text = load(args.lists, args.mirror, args.arch)
    print(f"bookworm {inputs['release']['Version']}, Date: {inputs['release']['Date']}")
    counts = {}
    pool = build_pool(packages_text, translation_text, counts)

    section_counts = Counter(r["section"] for r in pool)
    labels = sorted(section_counts, key=lambda s: (-section_counts[s], s))[:NUM_LABELS]
    counts["sections_in_pool"] = len(section_counts)
    counts["classification_pool_rows"] = sum(section_counts[s] for s in labels)

    datasets, eligible_rows = {}, {}
    for task in ("classification", "summarization"):
        input_column, target_column = COLUMNS[task]
        eligible = [r for r in pool if task == "summarization" or r["section"] in labels]
        for split in SPLITS:
            in_split = [r for r in eligible if r["split"] == split]
            eligible_rows[(task, split)] = len(in_split)
            chosen = subsample(in_split, task, SIZES[task][split])
            if len(chosen) < SIZES[task][split]:
                print(f"note: {task}/{split} has {len(chosen)} rows, fewer than {SIZES[task][split]}")
            if task == "classification":
                missing = set(labels) - {r["section"] for r in chosen}
                if missing:
                    fail(f"classification/{split} lacks labels {sorted(missing)}")
            datasets[(task, split)] = [
                {input_column: r["description"], target_column: r["section"] if task == "classification" else r["synopsis"],
                 "package": r["package"], "source": r["source"]}
                for r in chosen]

    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        convert = []
        for (task, split), rows in datasets.items():
            jsonl = os.path.join(tmp, f"{task}-{split}.jsonl")
            write_jsonl(jsonl, rows)
            os.makedirs(os.path.join(args.out, task), exist_ok=True)
            convert += [jsonl, os.path.join(args.out, task, f"{split}.parquet")]
        subprocess.run(["dotnet", "run", "--project", os.path.join(ROOT, "tools", "kit", "ParquetWriter"), "-c", "Release", "--"] + convert,
                       check=True)

    files = {}
    for (task, split), rows in datasets.items():
        rel = f"{task}/{split}.parquet"
        with open(os.path.join(args.out, rel), "rb") as f:
            data = f.read()
        entry = {"rows": len(rows), "sampled_from": eligible_rows[(task, split)], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "columns": list(rows[0]), "sources": len({r["source"] for r in rows})}
        if task == "classification":
            entry["labels"] = dict(sorted(Counter(r["label"] for r in rows).items(), key=lambda kv: (-kv[1], kv[0])))
        files[rel] = entry

    manifest = {
        "description": "Debian bookworm main package descriptions: classification (text -> section) and summarization "
                       "(long description -> synopsis); built by tools/kit/build_debian_kit.py",
        "inputs": inputs,
        "parameters": {"seed": SEED, "min_chars": MIN_CHARS, "max_chars": MAX_CHARS, "num_labels": NUM_LABELS,
                       "per_source": PER_SOURCE, "split_percent": {"train": 80, "validation": 10, "test": 10}, "sizes": SIZES},
        "counts": counts,
        "labels": {s: section_counts[s] for s in labels},
        "files": files,
    }
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=2)
        f.write("\n")

    if args.corpus:
        os.makedirs(os.path.dirname(os.path.abspath(args.corpus)), exist_ok=True)
        with open(args.corpus, "w", encoding="utf-8", newline="\n") as f:
            n = 0
            for r in pool:
                if r["split"] == "train":
                    # One JSON object per line: a description's paragraphs contain empty lines, so plain text could not
                    # delimit documents. The text is the synopsis, a newline, then the long description.
                    f.write(json.dumps({"text": f"{r['synopsis']}\n{r['description']}"}, ensure_ascii=False) + "\n")
                    n += 1
        print(f"{args.corpus}: {n} descriptions of train sources, {os.path.getsize(args.corpus)} bytes")

    for rel, entry in files.items():
        print(f"{rel}: {entry['rows']} rows, {entry['sources']} sources, {entry['bytes']} bytes")


if __name__ == "__main__":
    main()
