#!/usr/bin/python3
"""Reference outputs of scikit-learn's stratified train_test_split and numpy's legacy RandomState.

Writes tests/fixtures/eval-data/stratify_reference.json, which Mistral.Eval.Tests compares with
Mistral.Eval.Data.StratifiedSplitter and Mistral.Eval.Data.NumpyRandomState.

Run with Debian's interpreter (apt-get install -y python3-sklearn):
    /usr/bin/python3 tools/eval_data/stratify_reference.py
"""
import json
import os
import sys

import numpy as np
import sklearn
from sklearn.model_selection import train_test_split

FRACTIONS = [0.025, 0.05, 0.1, 0.25, 0.5, 0.99]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "eval-data", "stratify_reference.json")


def interleave(counts, seed):
    """Labels with the given per-class counts, in a fixed shuffled order."""
    labels = [name for name, c in counts for _ in range(c)]
    order = np.random.RandomState(seed).permutation(len(labels))
    return [labels[i] for i in order]


def newsgroups_like():
    # 20 classes with unequal sizes (400..599), labels named like 20 Newsgroups.
    names = ["alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
             "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos",
             "rec.motorcycles", "rec.sport.baseball", "rec.sport.hockey", "sci.crypt",
             "sci.electronics", "sci.med", "sci.space", "soc.religion.christian",
             "talk.politics.guns", "talk.politics.mideast", "talk.politics.misc", "talk.religion.misc"]
    sizes = [480, 584, 591, 590, 578, 593, 585, 594, 598, 597, 600, 595, 591, 594, 593, 599, 546,
             564, 465, 377]
    return interleave(list(zip(names, sizes)), 7)


CASES = {
    # Sizes like the 20 Newsgroups training split (10664 rows): per-class counts only.
    "newsgroups_like": (newsgroups_like(), False),
    # Every class equally large: all remainders tie, so numpy's RNG decides which classes get +1.
    "equal_classes": (interleave([("c%02d" % i, 40) for i in range(20)], 11), True),
    # Small and skewed, with labels that sort differently by code point than by culture.
    "skewed": (interleave([("b", 50), ("a", 7), ("B", 23), ("é", 9), ("z", 111)], 3), True),
    "three_classes": (interleave([("neg", 101), ("pos", 99), ("neutral", 37)], 5), True),
}


def main():
    cases = []
    for name, (labels, with_indices) in CASES.items():
        runs = []
        for fraction in FRACTIONS:
            idx = np.arange(len(labels))
            try:
                train, test = train_test_split(idx, stratify=labels, train_size=fraction,
                                               random_state=42)
            except ValueError as e:  # sklearn refuses: too few rows per class on one side
                runs.append({"fraction": fraction, "error": str(e)})
                continue
            classes, counts = np.unique(np.array(labels)[train], return_counts=True)
            run = {
                "fraction": fraction,
                "train_count": int(len(train)),
                "test_count": int(len(test)),
                "per_class_train": {str(c): int(n) for c, n in zip(classes, counts)},
            }
            if with_indices:
                run["train_indices"] = [int(i) for i in train]
                run["test_indices"] = [int(i) for i in test]
            else:  # keep the fixture small: the first 100 rows of each side, in order
                run["train_head"] = [int(i) for i in train[:100]]
                run["test_head"] = [int(i) for i in test[:100]]
            runs.append(run)
        cases.append({"name": name, "labels": labels, "runs": runs})

    # Plain (unstratified) train_test_split, as a train/validation split.
    plain = []
    for n, test_size, seed in [(10, 0.3, 42), (101, 0.2, 0), (1000, 0.1, 1234)]:
        idx = np.arange(n)
        tr, te = train_test_split(idx, test_size=test_size, random_state=seed)
        plain.append({"n": n, "test_size": test_size, "seed": seed,
                      "train_indices": [int(i) for i in tr], "test_indices": [int(i) for i in te]})

    # numpy.random.RandomState(seed): raw 32-bit outputs and permutation(n).
    rng_ref = []
    for seed in [0, 1, 42, 4294967295]:
        rs = np.random.RandomState(seed)
        rs = np.random.RandomState(seed)
        key = rs.get_state()[1]
        rs = np.random.RandomState(seed)
        perm = [int(x) for x in rs.permutation(37)]
        choice = [int(x) for x in np.random.RandomState(seed).choice(50, size=7, replace=False)]
        rng_ref.append({"seed": seed, "state_head": [int(x) for x in key[:4]],
                        "permutation_37": perm, "choice_50_7": choice})

    doc = {
        "generator": "tools/eval_data/stratify_reference.py",
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "call": "train_test_split(idx, stratify=labels, train_size=fraction, random_state=42)",
        "stratified": cases,
        "plain": plain,
        "random_state": rng_ref,
    }
    tmp = OUT + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, OUT)
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
