#!/usr/bin/python3
"""Makes the tokenizer fixtures under tests/fixtures/tokenizer/ with the real SentencePiece library.

Needs Debian's packages (run with /usr/bin/python3, not pyenv's python3):
    apt-get update && apt-get install -y sentencepiece python3-sentencepiece python3-protobuf
and node + npm (for npm's mistral-tokenizer-js@1.0.0, fetched with `npm pack`).

Outputs:
  tiny-bpe.model            spm_train BPE model (vocab 1000, byte fallback, Mistral's normalizer settings)
                            trained on tools/tokenizer/corpus.txt
  tiny-bpe.cases.json       python3-sentencepiece ids/pieces/decode for every test string (cross-checked with spm_encode)
  tiny-bpe-udf.*            the same with user-defined (<|im_start|>, ###, @@) and control ([INST], [/INST]) pieces
  mistral-7b-v0.1.model     Mistral-7B-v0.1's tokenizer rebuilt from mistral-tokenizer-js's vocabulary and merges
  mistral.cases.json        python3-sentencepiece ids on the rebuilt model, each checked equal to mistral-tokenizer-js's encode
  *.decode.json             sp.decode of seeded random id sequences (byte tokens, controls, unk mixed in)

Usage: /usr/bin/python3 tools/tokenizer/make_fixtures.py   (from the repository root)
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
sys.path.insert(0, HERE)
import test_strings  # noqa: E402

JS_PACKAGE = "mistral-tokenizer-js@1.0.0"

# Mistral-7B-v0.1's tokenizer.model settings (normalizer_spec and the trainer_spec fields that matter).
SPM_TRAIN_ARGS = [
    "--model_type=bpe",
    "--vocab_size=1000",
    "--byte_fallback=true",
    "--normalization_rule_name=identity",
    "--add_dummy_prefix=true",
    "--remove_extra_whitespaces=false",
    "--split_digits=true",
    "--allow_whitespace_only_pieces=true",
    "--character_coverage=0.9995",
    "--max_sentencepiece_length=16",
    "--unk_id=0",
    "--bos_id=1",
    "--eos_id=2",
    "--pad_id=-1",
    "--num_threads=1",
]


def write_json_lines(path, items):
    """A JSON array with one item per line (readable diffs), written to a temp file then renamed."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i, item in enumerate(items):
            f.write(json.dumps(item, ensure_ascii=False))
            f.write(",\n" if i + 1 < len(items) else "\n")
        f.write("]\n")
    os.replace(tmp, path)


def train_tiny(workdir, name="tiny-bpe", extra_args=()):
    # Train inside a temp dir with relative names so the model (which records its input/prefix) is reproducible.
    shutil.copy(os.path.join(HERE, "corpus.txt"), os.path.join(workdir, "corpus.txt"))
    subprocess.run(["spm_train", "--input=corpus.txt", "--model_prefix=" + name] + SPM_TRAIN_ARGS + list(extra_args),
                   cwd=workdir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dst = os.path.join(OUT, name + ".model")
    shutil.copy(os.path.join(workdir, name + ".model"), dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    return dst


# A variant with user-defined pieces (kept whole in text) and extra control pieces (invisible when decoded),
# like the [INST] tokens of later Mistral tokenizers.
UDF_ARGS = ["--user_defined_symbols=<|im_start|>,###,@@", "--control_symbols=[INST],[/INST]"]
UDF_STRINGS = [
    "<|im_start|>user hello",
    "### Sentence:text ### Class:label",
    "###",
    " ###",
    "a###b@@c",
    "@@@@@",
    "####",
    "[INST] is control, typed as text [/INST]",
    "<|im_start|><|im_start|>",
    "<|im_start",
]


def fetch_js_package(workdir):
    subprocess.run(["npm", "pack", JS_PACKAGE, "--silent"], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    tgz = [f for f in os.listdir(workdir) if f.startswith("mistral-tokenizer-js-") and f.endswith(".tgz")][0]
    subprocess.run(["tar", "xzf", tgz], cwd=workdir, check=True)
    return os.path.join(workdir, "package")


def is_whitespace_piece(piece):
    return len(piece) >= 2 and set(piece) == {"\u2581"}


def build_mistral_model(pkg, workdir):
    """Rebuilds Mistral-7B-v0.1's tokenizer.model from the npm package's vocabulary and merges.

    Pieces keep their ids. Types: 0 <unk> UNKNOWN, 1 <s> / 2 </s> CONTROL, 3..258 <0xXX> BYTE, the rest NORMAL.
    Scores follow SentencePiece's BPE trainer (piece id i scores -(i - 259)) except the whitespace-only
    pieces, which the package's merge list (the order of the Hugging Face conversion, sorted by score) puts
    after every other merge, in id order: they get scores below all others, decreasing with id.
    The merge list is checked to be exactly this order before the model is written.
    """
    dump = os.path.join(workdir, "mistral-dump.json")
    subprocess.run(["node", os.path.join(HERE, "mistral_js.mjs"), pkg, "dump", dump], check=True)
    with open(dump, encoding="utf-8") as f:
        data = json.load(f)
    vocab, merges = data["vocab"], data["merges"]
    assert len(vocab) == 32000 and len(set(vocab)) == 32000, "unexpected vocabulary"
    index = {p: i for i, p in enumerate(vocab)}

    ws_ids = sorted(i for i, p in enumerate(vocab) if is_whitespace_piece(p))
    scores = {}
    for i, p in enumerate(vocab):
        if i >= 259:
            scores[i] = -float(i - 259)
    for k, i in enumerate(ws_ids):
        scores[i] = -float(100000 + k)

    # Check: the package's merge priority order equals "higher score of the merged piece first".
    results = [index[vocab[l] + vocab[r]] for l, r in merges]
    keys = [-scores[r] for r in results]
    assert keys == sorted(keys), "merge order is not monotone in the chosen scores"

    m = pb.ModelProto()
    for i, p in enumerate(vocab):
        sp = m.pieces.add()
        sp.piece = p
        if i == 0:
            sp.type, sp.score = pb.ModelProto.SentencePiece.UNKNOWN, 0.0
        elif i in (1, 2):
            sp.type, sp.score = pb.ModelProto.SentencePiece.CONTROL, 0.0
        elif i < 259:
            assert p == "<0x%02X>" % (i - 3), p
            sp.type, sp.score = pb.ModelProto.SentencePiece.BYTE, 0.0
        else:
            sp.type, sp.score = pb.ModelProto.SentencePiece.NORMAL, scores[i]
    t = m.trainer_spec
    t.model_type = pb.TrainerSpec.BPE
    t.vocab_size = 32000
    t.byte_fallback = True
    t.split_digits = True
    t.allow_whitespace_only_pieces = True
    t.max_sentencepiece_length = 16
    t.character_coverage = 0.99995
    t.treat_whitespace_as_suffix = False
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = 0, 1, 2, -1
    t.unk_piece, t.bos_piece, t.eos_piece = "<unk>", "<s>", "</s>"
    n = m.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = True
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True
    dst = os.path.join(OUT, "mistral-7b-v0.1.model")
    with open(dst + ".tmp", "wb") as f:
        f.write(m.SerializeToString())
    os.replace(dst + ".tmp", dst)
    return dst


def cases_for(sp, strings):
    cases = []
    for s in strings:
        ids = sp.encode(s)
        cases.append({
            "text": s,
            "ids": ids,
            "pieces": [sp.id_to_piece(i) for i in ids],
            "decoded": sp.decode(ids),
        })
    return cases


def cross_check_spm_encode(model, strings, sp):
    """spm_encode (the C++ CLI) must give the same ids as the Python binding, for single-line strings."""
    lines = [s for s in strings if "\n" not in s and "\r" not in s and s.strip() != "" and s == s.strip()]
    res = subprocess.run(["spm_encode", "--model=" + model, "--output_format=id"],
                         input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    got = res.stdout.split("\n")[: len(lines)]
    for s, line in zip(lines, got):
        want = sp.encode(s)
        have = [int(x) for x in line.split()]
        assert have == want, f"spm_encode disagrees on {s!r}: {have} vs {want}"
    return len(lines)


def decode_cases(sp, seed, count):
    """sp.decode on seeded random id sequences: normal pieces, bytes (valid UTF-8 runs and stray bytes),
    <unk>, <s>, </s> anywhere, plus id_to_piece for each id."""
    rng = random.Random(seed)
    vocab = sp.get_piece_size()
    controls = [i for i in range(3, vocab) if sp.is_control(i)]
    byte0 = sp.piece_to_id("<0x00>")
    cases = []
    for _ in range(count):
        ids = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.45:
                ids.append(rng.randrange(259, vocab))
            elif r < 0.6:
                ch = rng.choice(["é", "😀", "中", "Ꙋ", "\n", "\t", "ß", "🦙"])
                ids.extend(byte0 + b for b in ch.encode("utf-8"))
            elif r < 0.7:
                ids.append(rng.randrange(byte0, byte0 + 256))
            elif r < 0.8:
                ids.append(rng.choice([0, 1, 2] + controls))
            else:
                ids.append(rng.choice([i for i in range(259, vocab) if sp.id_to_piece(i).startswith("\u2581")][:200]))
        cases.append({"ids": ids, "decoded": sp.decode(ids), "pieces": [sp.id_to_piece(i) for i in ids]})
    # Fixed edge cases.
    b = byte0
    for ids in ([], [1], [2], [0], [1, 2], [b + 0xE4], [b + 0xE4, b + 0xB8], [b + 0xE4, b + 0xB8, b + 0xAD],
                [b + 0xF0, b + 0x9F, b + 0x98, b + 0x80], [b + 0xFF], [b + 0x80, b + 0x80],
                [b + 0xE4, b + 0xB8, b + 0x41], [b + 0x41], [1, b + 0x41], [b + 0xE4, b + 0xB8, 1, b + 0xAD],
                [b + 0xED, b + 0xA0, b + 0x80], [b + 0xF4, b + 0x90, b + 0x80, b + 0x80], [b + 0xC0, b + 0x80]):
        cases.append({"ids": ids, "decoded": sp.decode(ids), "pieces": [sp.id_to_piece(i) for i in ids]})
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    strings = test_strings.all_strings()
    with tempfile.TemporaryDirectory() as work:
        # 1. A small model trained by spm_train.
        tiny = train_tiny(work)
        sp = spm.SentencePieceProcessor(model_file=tiny)
        n_cli = cross_check_spm_encode(tiny, strings, sp)
        write_json_lines(os.path.join(OUT, "tiny-bpe.cases.json"), cases_for(sp, strings))
        write_json_lines(os.path.join(OUT, "tiny-bpe.decode.json"), decode_cases(sp, 7, 150))
        print(f"tiny-bpe: {len(strings)} strings, {n_cli} cross-checked with spm_encode, vocab {sp.get_piece_size()}")

        # 1b. The same with user-defined and control pieces.
        udf = train_tiny(work, "tiny-bpe-udf", UDF_ARGS)
        su = spm.SentencePieceProcessor(model_file=udf)
        udf_strings = UDF_STRINGS + strings[:150]
        n_cli_u = cross_check_spm_encode(udf, udf_strings, su)
        write_json_lines(os.path.join(OUT, "tiny-bpe-udf.cases.json"), cases_for(su, udf_strings))
        write_json_lines(os.path.join(OUT, "tiny-bpe-udf.decode.json"), decode_cases(su, 13, 100))
        print(f"tiny-bpe-udf: {len(udf_strings)} strings, {n_cli_u} cross-checked with spm_encode")

        # 2. Mistral-7B-v0.1 rebuilt from mistral-tokenizer-js, checked against the package's own encoder.
        pkg = fetch_js_package(work)
        model = build_mistral_model(pkg, work)
        ms = spm.SentencePieceProcessor(model_file=model)
        cases = cases_for(ms, strings)
        strings_path = os.path.join(work, "strings.json")
        js_path = os.path.join(work, "js.json")
        with open(strings_path, "w", encoding="utf-8") as f:
            json.dump(strings, f)
        subprocess.run(["node", os.path.join(HERE, "mistral_js.mjs"), pkg, "encode", strings_path, js_path], check=True)
        with open(js_path, encoding="utf-8") as f:
            js = json.load(f)
        mismatches = []
        for c, j in zip(cases, js):
            want = [1] + c["ids"] if c["text"] else []
            if j["ids"] != want:
                mismatches.append((c["text"], j["ids"], want))
        for text, have, want in mismatches:
            print(f"  mistral-tokenizer-js differs on {text!r}: js {have} sp {[1] + want}")
        assert not mismatches, f"{len(mismatches)} strings where mistral-tokenizer-js and sentencepiece disagree"
        hello = ms.encode("Hello, world!", add_bos=True)
        assert hello == [1, 22557, 28725, 1526, 28808], hello
        n_cli_m = cross_check_spm_encode(model, strings, ms)
        write_json_lines(os.path.join(OUT, "mistral.cases.json"), cases)
        write_json_lines(os.path.join(OUT, "mistral.decode.json"), decode_cases(ms, 11, 150))
        print(f"mistral: {len(strings)} strings equal to mistral-tokenizer-js, {n_cli_m} cross-checked with spm_encode")


if __name__ == "__main__":
    main()
