#!/usr/bin/python3
"""Reference classification metrics for Mistral.Eval's ClassificationMetrics, from scikit-learn.

Runs Debian 12's python3-sklearn (scikit-learn 1.2.1; apt-get install -y python3-sklearn) on
string-label cases, including labels that are only predicted or only true, and writes what
accuracy_score, precision_recall_fscore_support (average=None/micro/macro/weighted),
confusion_matrix and classification_report (digits 2 and 4) return, for zero_division=0 and 1.
Cases named "labels_*" pass an explicit labels= list (in the given order) to all of them, as
"labels_given"; its semantics in scikit-learn 1.2.1, checked here rather than assumed:
- a label of the list that occurs nowhere gets a row (support 0, zero-division precision and
  recall; F1 = 1 with zero_division=1, since 2PR/(P+R) with P = R = 1) and counts in the averages;
- a prediction that is not in the list is a false negative of its true label (recall drops) but
  has no row and is no false positive of anything; a true label not in the list is left out
  (no row, no support) but its sample still counts as a false positive of a predicted listed label;
- micro averages pool TP/FP/FN over the listed labels only, so micro != accuracy, and
  classification_report prints a "micro avg" row instead of "accuracy" unless the list is a
  permutation of the labels present; average rows show the summed support of the listed labels;
- weighted average with zero total support returns (zd, zd, zd) when nothing listed was predicted,
  else (0, zd, 0) (1.2.1's early return);
- confusion_matrix keeps only samples whose true and predicted labels are both listed, and raises
  "At least one label specified must be in y_true" when none is ("confusion_matrix_error");
- supports print as floats ("1.0") when no sample at all is correct, listed or not.

scikit-learn 1.2.1 has no zero_division=np.nan (added in 1.3). The "nan" entries are a
re-statement of 1.3+'s rule, computed here from 1.2.1's counts: an ill-defined precision/recall
is NaN, F1 of such a label is 0 (1.3+ computes F1 = 2TP/(2TP+FP+FN), nonzero denominator for any
label of the union), and NaN values are left out of the macro and weighted averages
(sklearn's _nanaverage; all-zero weights fall back to the plain mean); with labels= a label that
is neither true nor predicted has a NaN F1 (1.3+'s 0/0), and micro P/R/F1 are NaN when their pooled
denominator is 0. JSON null stands for NaN.

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
    # Explicit labels= (scikit-learn's argument, in the given order).
    yield "labels_missing_class", ["b", "a", "b", "c", "a"], ["b", "a", "a", "c", "c"], ["c", "a", "d", "b"]
    yield "labels_permutation_of_present", ["cat", "dog", "cat", "bird"], ["cat", "cat", "dog", "bird"], ["dog", "cat", "bird"]
    yield "labels_prediction_outside", ["a", "b", "a", "b", "c"], ["a", "", "I think b", "b", "c"], ["b", "a", "c"]
    yield "labels_true_outside", ["a", "b", "x", "x", "y"], ["a", "b", "a", "x", "b"], ["a", "b"]
    yield "labels_subset_and_absent", ["a", "b", "c", "c", "a"], ["a", "c", "c", "zz", "b"], ["c", "a", "e"]
    yield "labels_nothing_correct", ["a", "b", "a"], ["b", "a", "q"], ["a", "b", "c"]
    yield "labels_none_in_truth_predicted", ["a", "b"], ["c", "b"], ["c", "d"]
    yield "labels_none_in_truth_or_prediction", ["a", "b"], ["a", "b"], ["c"]
    yield "labels_only_unlisted_correct", ["a", "x", "b"], ["b", "x", "a"], ["a", "b"]
    yield "labels_single_absent_and_present", ["p", "p", "q"], ["p", "q", "q"], ["r", "p"]
    truth = [rng.choice(NEWSGROUPS[:12]) for _ in range(30)]
    pred = []
    for t in truth:
        roll = rng.random()
        if roll < 0.6:
            pred.append(t)
        elif roll < 0.85:
            pred.append(rng.choice(NEWSGROUPS[:14]))
        else:
            pred.append(rng.choice(["", "I think sci.med", t.upper()]))
    yield "labels_newsgroups_small_sample", truth, pred, list(NEWSGROUPS)
    for i in range(4):
        k = rng.randint(2, 6)
        names = ["L%d" % j for j in range(k + 2)]
        n = rng.randint(1, 25)
        truth = [rng.choice(names[:k]) for _ in range(n)]
        pred = [rng.choice(names) if rng.random() < 0.5 else t for t in truth]
        given = rng.sample(names, rng.randint(1, len(names)))
        yield "labels_random_%d" % i, truth, pred, given


def nan_restatement(y_true, y_pred, labels):
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    # Counted directly (a confusion matrix restricted to the labels would miss predictions of listed labels
    # whose true label is not listed).
    pred_sum = np.array([sum(1 for y in y_pred if y == label) for label in labels])
    true_sum = np.array([sum(1 for y in y_true if y == label) for label in labels])
    p = np.where(pred_sum == 0, np.nan, p)
    r = np.where(true_sum == 0, np.nan, r)
    f = np.where(pred_sum + true_sum == 0, np.nan, f)

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

    micro = list(precision_recall_fscore_support(y_true, y_pred, labels=labels, average="micro", zero_division=0)[:3])
    if pred_sum.sum() == 0:
        micro[0] = float("nan")
    if true_sum.sum() == 0:
        micro[1] = float("nan")
    if pred_sum.sum() + true_sum.sum() == 0:
        micro[2] = float("nan")
    return {
        "per_label": [[nan(a), nan(b), nan(c), int(d)] for a, b, c, d in zip(p, r, f, s)],
        "micro": [nan(micro[0]), nan(micro[1]), nan(micro[2])],
        "macro": [nan(avg(p, None)), nan(avg(r, None)), nan(avg(f, None))],
        "weighted": [nan(avg(p, s)), nan(avg(r, s)), nan(avg(f, s))],
    }


def nan(value):
    value = float(value)
    return None if value != value else value


def compute(name, y_true, y_pred, labels_given=None):
    if labels_given is None:
        labels = sorted(set(y_true) | set(y_pred))  # what unique_labels gives for strings
        assert list(np.unique(np.asarray(y_true + y_pred))) == labels
        report_labels = {}
    else:
        labels = list(labels_given)
        report_labels = {"labels": labels}
    out = {"name": name, "y_true": y_true, "y_pred": y_pred}
    if labels_given is not None:
        out["labels_given"] = labels
    out["labels"] = labels
    out["accuracy"] = float(accuracy_score(y_true, y_pred))
    try:
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    except ValueError as e:
        if labels_given is None:
            raise
        out["confusion_matrix"] = None
        out["confusion_matrix_error"] = str(e)
    for zd in (0, 1):
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=zd)
        entry = {"per_label": [[float(a), float(b), float(c), int(d)] for a, b, c, d in zip(p, r, f, s)]}
        for average in ("micro", "macro", "weighted"):
            ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                            zero_division=zd)
            entry[average] = [float(ap), float(ar), float(af)]
        entry["report2"] = classification_report(y_true, y_pred, zero_division=zd, **report_labels)
        entry["report4"] = classification_report(y_true, y_pred, digits=4, zero_division=zd, **report_labels)
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
