#!/usr/bin/python3
"""Reference classification metrics for Mistral.Eval's ClassificationMetrics, from scikit-learn.

Runs Debian 12's python3-sklearn (scikit-learn 1.2.1; apt-get install -y python3-sklearn) on
string-label cases, including labels that are only predicted or only true, and writes what
accuracy_score, precision_recall_fscore_support (average=None/micro/macro/weighted),
confusion_matrix and classification_report (digits 2 and 4) return, for zero_division=0 and 1.

scikit-learn 1.2.1 has no zero_division=np.nan (added in 1.3). The "nan" entries are a
re-statement of 1.3+'s rule, computed here from 1.2.1's counts: an ill-defined precision/recall
is NaN, F1 of such a label is 0 (1.3+ computes F1 = 2TP/(2TP+FP+FN), nonzero denominator for any
label of the union), and NaN values are left out of the macro and weighted averages
(sklearn's _nanaverage). JSON null stands for NaN.

Usage: /usr/bin/python3 tools/eval_metrics/sklearn_reference.py tests/fixtures/eval-metrics/classification_cases.json
"""
import json
import os
import random
import sys

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix,
                             precision_recall_fscore_support)

NEWSGROUPS = ["alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
              "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
              "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
              "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
              "talk.politics.misc", "talk.religion.misc"]


def cases():
    rng = random.Random(7)
    yield "simple", ["cat", "dog", "cat", "bird", "dog", "cat"], ["cat", "cat", "cat", "bird", "dog", "dog"]
    yield "only_predicted", ["a", "b", "a", "b"], ["a", "z", "a", "b"]
    yield "only_true", ["a", "b", "c", "c"], ["a", "b", "a", "b"]
    yield "both_absent_kinds", ["x", "y", "y", "w"], ["y", "q", "y", "x"]
    yield "all_correct", ["p", "q", "r", "p"], ["p", "q", "r", "p"]
    yield "all_wrong", ["p", "q", "r"], ["q", "r", "s"]
    yield "single_label", ["only"] * 5, ["only"] * 5
    yield "single_sample_wrong", ["a"], ["b"]
    yield "ordering", ["b", "B", "a", "_", "Z", "é", "", "10", "9"], ["B", "b", "a", "a", "é", "Z", "9", "", "10"]
    yield "eighths", ["a"] * 8 + ["b"] * 8, ["a"] * 7 + ["b"] + ["b"] * 5 + ["a"] * 3
    truth = [rng.choice(NEWSGROUPS) for _ in range(400)]
    pred = []
    for t in truth:
        roll = rng.random()
        if roll < 0.55:
            pred.append(t)
        elif roll < 0.85:
            pred.append(rng.choice(NEWSGROUPS[:15]))
        elif roll < 0.93:
            pred.append(rng.choice(["", "comp.graphics\n", " sci.space", "I think sci.med"]))
        else:
            pred.append(t.upper())
    yield "newsgroups_like", truth, pred
    for i in range(6):
        k = rng.randint(2, 7)
        labels = ["L%d" % j for j in range(k)]
        n = rng.randint(1, 60)
        truth = [rng.choice(labels[:-1] or labels) for _ in range(n)]
        pred = [rng.choice(labels[1:] + labels[:1]) if rng.random() < 0.5 else t for t in truth]
        yield "random_%d" % i, truth, pred


def nan_restatement(y_true, y_pred, labels):
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    pred_sum = cm.sum(axis=0)
    true_sum = cm.sum(axis=1)
    p = np.where(pred_sum == 0, np.nan, p)
    r = np.where(true_sum == 0, np.nan, r)

    def avg(values, weights):
        mask = ~np.isnan(values)
        if not mask.any():
            return float("nan")
        if weights is None:
            return float(np.nanmean(values))
        w = weights[mask]
        if w.sum() == 0:
            return float(np.average(values[mask]))
        return float(np.average(values[mask], weights=w))

    micro = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="micro", zero_division=0)
    return {
        "per_label": [[nan(a), nan(b), nan(c), int(d)] for a, b, c, d in zip(p, r, f, s)],
        "micro": [nan(micro[0]), nan(micro[1]), nan(micro[2])],
        "macro": [nan(avg(p, None)), nan(avg(r, None)), nan(avg(f, None))],
        "weighted": [nan(avg(p, s)), nan(avg(r, s)), nan(avg(f, s))],
    }


def nan(value):
    value = float(value)
    return None if value != value else value


def compute(name, y_true, y_pred):
    labels = sorted(set(y_true) | set(y_pred))  # what unique_labels gives for strings
    assert list(np.unique(np.asarray(y_true + y_pred))) == labels
    out = {"name": name, "y_true": y_true, "y_pred": y_pred, "labels": labels,
           "accuracy": float(accuracy_score(y_true, y_pred)),
           "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}
    for zd in (0, 1):
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=zd)
        entry = {"per_label": [[float(a), float(b), float(c), int(d)] for a, b, c, d in zip(p, r, f, s)]}
        for average in ("micro", "macro", "weighted"):
            ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                            zero_division=zd)
            entry[average] = [float(ap), float(ar), float(af)]
        entry["report2"] = classification_report(y_true, y_pred, zero_division=zd)
        entry["report4"] = classification_report(y_true, y_pred, digits=4, zero_division=zd)
        out["zero_division_%d" % zd] = entry
    out["zero_division_nan"] = nan_restatement(y_true, y_pred, labels)
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    data = {"source": "tools/eval_metrics/sklearn_reference.py with scikit-learn %s (Debian python3-sklearn); "
                      "zero_division_nan is a re-statement of scikit-learn >= 1.3" % sklearn.__version__,
            "cases": [compute(*c) for c in cases()]}
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, sys.argv[1])
    print("wrote %d cases to %s" % (len(data["cases"]), sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
