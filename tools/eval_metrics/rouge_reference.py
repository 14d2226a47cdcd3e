#!/usr/bin/python3
"""Reference ROUGE values for Mistral.Eval's RougeScorer.

This file is a RE-STATEMENT, written for this project, of the scoring that Google's rouge_score
0.1.2 performs (rouge_scorer.py, tokenize.py, scoring.py) -- the package Hugging Face `evaluate`
wraps. It is not a copy of that package: it restates its rules (tokenizer, n-gram overlap, LCS,
summary-level union LCS with ROUGE-1.5.5 hit counting and the same backtrack tie-break, best-of
for multiple references, fmeasure formula) so that the C# port can be checked against values
computed here. The stemmer is the real one: NLTK's PorterStemmer() from Debian's python3-nltk
(NLTK 3.8, default NLTK_EXTENSIONS mode), exactly what rouge_score uses.

Usage (Debian 12: apt-get install -y python3-nltk):
  /usr/bin/python3 tools/eval_metrics/rouge_reference.py --generate tests/fixtures/eval-metrics/rouge_cases.json
  /usr/bin/python3 tools/eval_metrics/rouge_reference.py --bench [--pairs 10000] [--runs 5]
"""
import argparse
import collections
import json
import random
import re
import statistics
import sys
import time

from nltk.stem import porter

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_SPACES = re.compile(r"\s+")
_VALID = re.compile(r"^[a-z0-9]+$")
_NGRAM_TYPE = re.compile(r"rouge[0-9]$")


class Tokenizer:
    """rouge_score's DefaultTokenizer: lower(), non-[a-z0-9] runs -> spaces, split, stem > 3 chars."""

    def __init__(self, use_stemmer):
        self._stemmer = porter.PorterStemmer() if use_stemmer else None
        self._cache = {}

    def _stem(self, token):
        stem = self._cache.get(token)
        if stem is None:
            stem = self._stemmer.stem(token)
            self._cache[token] = stem
        return stem

    def tokenize(self, text):
        text = _NON_ALNUM.sub(" ", text.lower())
        tokens = _SPACES.split(text)
        if self._stemmer is not None:
            tokens = [self._stem(t) if len(t) > 3 else t for t in tokens]
        return [t for t in tokens if _VALID.match(t)]


def fmeasure(precision, recall):
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def ngram_counts(tokens, n):
    counts = collections.Counter()
    for i in range(len(tokens) - n + 1):
        counts[tuple(tokens[i:i + n])] += 1
    return counts


def score_ngrams(target_tokens, prediction_tokens, n):
    target = ngram_counts(target_tokens, n)
    prediction = ngram_counts(prediction_tokens, n)
    overlap = sum(min(count, prediction[gram]) for gram, count in target.items())
    p = overlap / max(sum(prediction.values()), 1)
    r = overlap / max(sum(target.values()), 1)
    return (p, r, fmeasure(p, r))


def lcs_table(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        row, above = table[i], table[i - 1]
        ai = a[i - 1]
        for j in range(1, len(b) + 1):
            row[j] = above[j - 1] + 1 if ai == b[j - 1] else max(above[j], row[j - 1])
    return table


def score_lcs(target_tokens, prediction_tokens):
    if not target_tokens or not prediction_tokens:
        return (0.0, 0.0, 0.0)
    length = lcs_table(target_tokens, prediction_tokens)[-1][-1]
    p = length / len(prediction_tokens)
    r = length / len(target_tokens)
    return (p, r, fmeasure(p, r))


def lcs_indices(ref, cand):
    """Indices into ref of one LCS: diagonal on match, left only if strictly greater, else up."""
    table = lcs_table(ref, cand)
    i, j, out = len(ref), len(cand), []
    while i > 0 and j > 0:
        if ref[i - 1] == cand[j - 1]:
            out.append(i - 1)
            i -= 1
            j -= 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out


def score_summary_lcs(target_lines, prediction_lines):
    if not target_lines or not prediction_lines:
        return (0.0, 0.0, 0.0)
    m = sum(len(s) for s in target_lines)
    n = sum(len(s) for s in prediction_lines)
    if not m or not n:
        return (0.0, 0.0, 0.0)
    left_r = collections.Counter(t for s in target_lines for t in s)
    left_c = collections.Counter(t for s in prediction_lines for t in s)
    hits = 0
    for ref in target_lines:
        union = set()
        for cand in prediction_lines:
            union.update(lcs_indices(ref, cand))
        for index in sorted(union):
            token = ref[index]
            if left_c[token] > 0 and left_r[token] > 0:
                hits += 1
                left_c[token] -= 1
                left_r[token] -= 1
    p = hits / n
    r = hits / m
    return (p, r, fmeasure(p, r))


class Scorer:
    def __init__(self, rouge_types, use_stemmer):
        for t in rouge_types:
            if t not in ("rougeL", "rougeLsum") and not (_NGRAM_TYPE.match(t) and int(t[5:]) > 0):
                raise ValueError("Invalid rouge type: %s" % t)
        self.rouge_types = list(rouge_types)
        self.tokenizer = Tokenizer(use_stemmer)

    def _lines(self, text):
        return [self.tokenizer.tokenize(s) for s in text.split("\n") if len(s)]

    def score(self, target, prediction):
        t_tokens = self.tokenizer.tokenize(target)
        p_tokens = self.tokenizer.tokenize(prediction)
        result = {}
        for rouge_type in self.rouge_types:
            if rouge_type == "rougeL":
                result[rouge_type] = score_lcs(t_tokens, p_tokens)
            elif rouge_type == "rougeLsum":
                result[rouge_type] = score_summary_lcs(self._lines(target), self._lines(prediction))
            else:
                result[rouge_type] = score_ngrams(t_tokens, p_tokens, int(rouge_type[5:]))
        return result

    def score_multi(self, targets, prediction):
        per_target = [self.score(t, prediction) for t in targets]
        best = {}
        for rouge_type in self.rouge_types:
            fs = [s[rouge_type][2] for s in per_target]
            best[rouge_type] = per_target[fs.index(max(fs))][rouge_type]  # first maximum, like argmax
        return best


# ----------------------------------------------------------------------------- fixture cases

WORDS = ("the a an and of to in is was were be been meeting meetings meet met running runs ran run "
         "happy happiness happily generalization generalize general conditional relational "
         "controlling controlled control agreed agreement dying lying tying skies sky news innings "
         "proceed exceed succeed caresses ponies ties cats feed plastered motoring sing hopping "
         "hoping filing falling hissing fizzed failing friends friendly organization organizer "
         "dialogue summary summarize summarization john mary amanda tom betty says said will "
         "tomorrow today party call calling called going go went gone 7 10pm 2024 x y z i you "
         "we they it this that there their here logic analogies electricity callousness").split()
EXOTIC = ["İstanbul", "\u212Aelvin", "café", "naïve", "東京", "😀", "straße", "ǅemal", "ﬁne",
          "Ωmega", "İİ", "iİi", "K\u212A", "１２３", "x\u0307y", "ŉ"]
PUNCT = [",", ".", "!", "?", "'", "-", "--", "...", ":)", "(", ")", "\"", "#", "@", "&", "—", "…"]


def random_text(rng, max_words, multiline):
    words = []
    for _ in range(rng.randint(0, max_words)):
        roll = rng.random()
        if roll < 0.07:
            words.append(rng.choice(EXOTIC))
        elif roll < 0.17:
            words.append(rng.choice(PUNCT))
        else:
            w = rng.choice(WORDS)
            if rng.random() < 0.15:
                w = w.capitalize() if rng.random() < 0.7 else w.upper()
            if rng.random() < 0.1:
                w += rng.choice(PUNCT)
            words.append(w)
    out = []
    for w in words:
        if out:
            if multiline and rng.random() < 0.18:
                out.append(rng.choice(["\n", "\n\n", " \n", "\n \n", "\r\n", "\t"]))
            else:
                out.append(" ")
        out.append(w)
    return "".join(out)


def build_cases():
    rng = random.Random(20240601)
    fixed = [
        ("", ""), ("", "a b c"), ("a b c", ""), ("!!! ...", "?? --"), ("   ", "\n\n"),
        ("The cat sat on the mat.", "The cat sat on the mat."),
        ("a b a b a b", "b a b a"), ("a a a b", "a b b b"),
        ("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5"),
        ("İstanbul İİ \u212Aelvin", "i stanbul ii kelvin"),
        ("First sentence.\nSecond Sentence.", "Second sentence.\nFirst Sentence."),
        ("a b c d\ne f a b\nc d", "a c b d\nb a\n\nd c e"),
        ("x y x y x\ny x y", "y x y x\nx x y y\ny"),
        ("running runner runs", "run running ran"),
        ("a\n\n\nb\n", "\nb\na\n"),
    ]
    cases = []
    all_types = ["rouge1", "rouge2", "rouge3", "rouge4", "rouge9", "rougeL", "rougeLsum"]
    for target, prediction in fixed:
        for stem in (False, True):
            cases.append({"targets": [target], "prediction": prediction, "stem": stem})
    for i in range(200):
        multiline = i % 3 != 0
        n_targets = 1 if rng.random() < 0.8 else rng.randint(2, 3)
        max_words = rng.choice([3, 8, 20, 40])
        targets = [random_text(rng, max_words, multiline) for _ in range(n_targets)]
        if rng.random() < 0.3:
            # Prediction reuses target words so that overlaps, ties and repeated tokens are common.
            source = rng.choice(targets).split(" ")
            rng.shuffle(source)
            prediction = " ".join(source[: rng.randint(0, len(source))])
            if multiline and rng.random() < 0.5:
                prediction = prediction.replace(" ", "\n", rng.randint(0, 3))
        else:
            prediction = random_text(rng, max_words, multiline)
        cases.append({"targets": targets, "prediction": prediction, "stem": rng.random() < 0.6})
    scorers = {s: Scorer(all_types, s) for s in (False, True)}
    for case in cases:
        scorer = scorers[case["stem"]]
        if len(case["targets"]) == 1:
            scores = scorer.score(case["targets"][0], case["prediction"])
        else:
            scores = scorer.score_multi(case["targets"], case["prediction"])
        case["target_tokens"] = [scorer.tokenizer.tokenize(t) for t in case["targets"]]
        case["expected"] = {k: {"p": v[0], "r": v[1], "f": v[2]} for k, v in scores.items()}
    return {"source": "tools/eval_metrics/rouge_reference.py --generate (re-statement of rouge_score 0.1.2 "
                      "scoring with NLTK 3.8's PorterStemmer, Debian python3-nltk)",
            "types": all_types, "cases": cases}


# ----------------------------------------------------------------------------- benchmark data

NAMES = ["Amanda", "Tom", "Betty", "Jerry", "Hannah", "Greg", "Olivia", "Leon", "Sam", "Mia"]
BENCH_WORDS = ("will be there tomorrow at the office meeting party dinner call later today "
               "sorry late running going bringing cookies pizza movie tonight weekend "
               "thanks great okay sure maybe need help with project presentation report "
               "flight train station picked up dog cat vet birthday present buying "
               "shopping cinema tickets booked cancelled rescheduled wondering whether "
               "happened yesterday morning evening nice good bad tired working home").split()


class SplitMix64:
    """The generator both benchmark sides use, so they score identical synthetic text."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n


def bench_sentence(rng):
    words = [NAMES[rng.below(len(NAMES))]]
    for _ in range(4 + rng.below(10)):
        words.append(BENCH_WORDS[rng.below(len(BENCH_WORDS))])
    return " ".join(words) + "."


def bench_pairs(count, seed=12345):
    rng = SplitMix64(seed)
    pairs = []
    for _ in range(count):
        target = "\n".join(bench_sentence(rng) for _ in range(1 + rng.below(3)))
        prediction = "\n".join(bench_sentence(rng) for _ in range(1 + rng.below(3)))
        pairs.append((target, prediction))
    return pairs


def bench(pairs_count, runs):
    pairs = bench_pairs(pairs_count)
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    times = []
    sums = None
    for run in range(runs + 1):  # the first run is a warm-up
        scorer = Scorer(types, True)  # fresh scorer: the stem cache starts empty each run
        start = time.perf_counter()
        results = [scorer.score(t, p) for t, p in pairs]
        elapsed = time.perf_counter() - start
        if run > 0:
            times.append(elapsed)
        sums = {k: sum(r[k][2] for r in results) / len(results) for k in types}
    median = statistics.median(times)
    print("python re-statement: %d pairs, median of %d runs: %.3f s (%.1f pairs/s); runs: %s"
          % (pairs_count, runs, median, pairs_count / median, ", ".join("%.3f" % t for t in times)))
    print("mean F: " + ", ".join("%s=%.15f" % (k, v) for k, v in sums.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generate", metavar="JSON", help="write the fixture cases to this file")
    parser.add_argument("--bench", action="store_true", help="time rouge1/2/L/Lsum with stemming")
    parser.add_argument("--pairs", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.generate:
        data = build_cases()
        tmp = args.generate + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
        import os
        os.replace(tmp, args.generate)
        print("wrote %d cases to %s" % (len(data["cases"]), args.generate))
    if args.bench:
        bench(args.pairs, args.runs)
    if not args.generate and not args.bench:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
