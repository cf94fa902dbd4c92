"""Evaluation shared by every model: accuracy, macro-F1, per-class scores, confusion matrix."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    """Metrics as plain JSON-able values; `y_true`/`y_pred` are label indices into `labels`."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = {}
    f1s = []
    for i, label in enumerate(labels):
        tp = confusion[i, i]
        predicted, actual = confusion[:, i].sum(), confusion[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[label] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                            "f1": round(float(f1), 4), "support": int(actual)}
    return {
        "accuracy": round(float((y_true == y_pred).mean()) if len(y_true) else 0.0, 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "n": int(len(y_true)),
        "labels": list(labels),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }
