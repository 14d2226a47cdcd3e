#!/usr/bin/env python3
"""Trains the kit's SentencePiece tokenizer and writes its parity fixture.

    apt-get install -y sentencepiece python3-sentencepiece
    python3 tools/kit/build_debian_kit.py --corpus kit/corpus/train.jsonl   # the train sources' descriptions (kit/data/README.md)
    python3 tools/kit/train_tokenizer.py --corpus kit/corpus/train.jsonl --out kit/model

Same kind and normalisation as Mistral-7B's tokenizer.model: BPE with byte fallback, identity normalisation, a dummy
prefix, whitespace kept, digits split, unk 0 / bos 1 / eos 2, no pad. Deterministic: one thread, the whole corpus.
Writes OUT/tokenizer.model and OUT/tokenizer.cases.json: python3-sentencepiece's ids for every line of the
last 300 corpus lines (and a few edge cases), which tests/Mistral.Core.Tests compares with MistralTokenizer.
"""
import argparse, json, os, shutil, subprocess

import sentencepiece as spm

ap = argparse.ArgumentParser()
ap.add_argument("--corpus", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--vocab", type=int, default=8000)
ap.add_argument("--cases", default=None, help="text file whose lines become parity cases (default: the corpus's last 300 lines)")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
args = [
    "--model_type=bpe", f"--vocab_size={a.vocab}", "--byte_fallback=true", "--normalization_rule_name=identity",
    "--add_dummy_prefix=true", "--remove_extra_whitespaces=false", "--split_digits=true", "--allow_whitespace_only_pieces=true",
    "--character_coverage=0.9995", "--max_sentencepiece_length=16", "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1",
    "--num_threads=1", "--max_sentence_length=8192", "--input_sentence_size=0",
]
docs = [json.loads(line)["text"] for line in open(a.corpus, encoding="utf-8") if line.strip()]
# Fixed relative paths (next to the corpus): spm_train records its input path and prefix in the model file, so a
# temporary folder would make every build differ.
work = os.path.relpath(os.path.dirname(os.path.abspath(a.corpus)))
text = os.path.join(work, "spm_input.txt")
with open(text, "w", encoding="utf-8", newline="\n") as f:   # spm_train reads one sentence per line
    for d in docs:
        f.write(d + "\n")
prefix = os.path.join(work, "spm_tokenizer")
subprocess.run(["spm_train", f"--input={text}", f"--model_prefix={prefix}"] + args, check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
shutil.copyfile(prefix + ".model", os.path.join(a.out, "tokenizer.model"))
for leftover in (text, prefix + ".model", prefix + ".vocab"):
    os.remove(leftover)

sp = spm.SentencePieceProcessor(model_file=os.path.join(a.out, "tokenizer.model"))
lines = [l for d in docs[-120:] for l in d.split("\n") if l.strip()][-300:] + docs[-20:]
edge = ["", " ", "  leading spaces", "trailing  ", "tabs\tand\nnewlines", "digits 1234567 and v2.0.1", "ünïcödé ✓ 漢字 🙂",
        "### Sentence:free software ### Class:utils", "Summarize the following dialogue that is delimited with triple backticks."]
cases = [{"text": t, "ids": sp.encode(t), "decoded": sp.decode(sp.encode(t))} for t in edge + lines]
with open(os.path.join(a.out, "tokenizer.cases.json"), "w", encoding="utf-8") as f:
    json.dump({"vocab_size": sp.get_piece_size(), "cases": cases}, f, ensure_ascii=False, indent=0)
print(f"{a.out}/tokenizer.model: {sp.get_piece_size()} pieces; {len(cases)} parity cases")
