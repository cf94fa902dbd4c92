"""Probability calibration of a serving directory: fit a temperature (or vector scaling) on held-out data, measure ECE.

    python -m training.calibrate --model layers/model/model \\
        --fit-data ../shared/data/emotion/train.txt@val --fit-data ../shared/data/semeval2018-ec/train.tsv@0.9:1 \\
        --report-data ../shared/data/emotion/test.txt --report-data ../shared/data/semeval2018-ec/dev.tsv@single \\
        --diagram docs/reliability-diagram.png --write

Logits come from the served model (`tweetmood.classifier.Classifier`: the int8 ONNX graph, its normalization and
encoder, length-sorted batches as the core forms them), so the fit corrects the model as it is served, quantization
included. `--write` stores the fit in `model.json["calibration"]`, which the serving core applies before its softmax.
Data specs: `PATH` (a `text;label`, CSV or JSONL file, or a SemEval-2018 E-c `.tsv`), with an optional suffix:
`@val` (what the training job holds out: of a labelled file, the seeded stratified 10% validation split; of E-c
`train.tsv`, its "ec-val" part), `@A:B` (rows from fraction A to fraction B of the file, in file order) or, for E-c,
`@single` (rows with exactly one of the labels). E-c rows are read by `training.data.load_ec`: rows carrying several
of the labels get soft targets spread evenly over them; rows carrying none are left out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tweetmood.batching import scored_in_order
from tweetmood.calibration import Calibration
from tweetmood.classifier import Classifier, read_model_meta
from tweetmood.records import Record
from tweetmood.storage import temp_beside

N_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)
VECTOR_L2 = 1e-2
"""Pull of vector scaling's weights towards 1 and biases towards 0: rare labels (21 E-c rows of love) barely move."""


# --- metrics ---------------------------------------------------------------------------------------------------


def as_targets(targets, n_classes: int) -> np.ndarray:
    """Hard label ids `[n]` or probability rows `[n, n_classes]` as a float64 `[n, n_classes]` matrix."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        if targets.size and (not np.issubdtype(targets.dtype, np.integer) or targets.min() < 0 or targets.max() >= n_classes):
            raise ValueError(f"label ids must be integers in [0, {n_classes}), got {targets[:5]}...")
        return np.eye(n_classes)[targets.astype(np.int64)]
    if targets.ndim != 2 or targets.shape[1] != n_classes:
        raise ValueError(f"targets must be label ids or rows of {n_classes} probabilities, got shape {targets.shape}")
    if (targets < 0).any() or not np.allclose(targets.sum(axis=1), 1, atol=1e-4):
        raise ValueError("soft targets must be non-negative rows that sum to 1")
    return targets.astype(np.float64)


def single_label_rows(targets: np.ndarray) -> np.ndarray:
    """Which rows of a target matrix put all their weight on one label. A score is read as the probability that its
    label is right, which only a row with one right label can check; so calibration is fitted on those rows alone."""
    return np.asarray(targets).max(axis=1) > 1 - 1e-6


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, targets) -> float:
    """Mean cross-entropy of softmax(`logits`) against `targets` (ids or probability rows)."""
    return float(-(as_targets(targets, logits.shape[1]) * log_softmax(logits)).sum(axis=1).mean())


def confidence_bins(probs, labels, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of top-label confidence, `(rows, summed confidence, summed correctness)`; bin i holds
    confidences in (i/n, (i+1)/n]. With soft targets, a row's correctness is the target mass on its predicted label
    (1 or 0 for hard labels)."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = as_targets(labels, probs.shape[1])
    rows, predicted = np.arange(len(probs)), probs.argmax(axis=1)
    confidence, correct = probs[rows, predicted], targets[rows, predicted]
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return (np.bincount(bins, minlength=n_bins), np.bincount(bins, confidence, n_bins),
            np.bincount(bins, correct, n_bins))


def expected_calibration_error(probs: np.ndarray, labels, n_bins: int = N_BINS) -> float:
    """Top-label ECE over `n_bins` equal-width confidence bins: sum over bins of |bin| / n * |accuracy - confidence|
    (`labels`: ids or probability rows, see `confidence_bins`)."""
    if not len(probs):
        raise ValueError("expected_calibration_error needs at least one row")
    count, confidence, correct = confidence_bins(probs, labels, n_bins)
    return float(np.abs(correct - confidence).sum() / count.sum())


def calibration_report(probs: np.ndarray, labels, n_bins: int = N_BINS) -> dict:
    """ECE, NLL, multi-class Brier score, accuracy and mean top confidence of `probs` against `labels`."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = as_targets(labels, probs.shape[1])
    rows = np.arange(len(probs))
    predicted = probs.argmax(axis=1)
    return {
        "n": int(len(probs)),
        "ece": round(expected_calibration_error(probs, targets, n_bins), 4),
        "nll": round(float(-(targets * np.log(np.clip(probs, 1e-12, 1))).sum(axis=1).mean()), 4),
        "brier": round(float(((probs - targets) ** 2).sum(axis=1).mean()), 4),
        "accuracy": round(float(targets[rows, predicted].mean()), 4),
        "mean_confidence": round(float(probs[rows, predicted].mean()), 4),
    }


# --- fitting ---------------------------------------------------------------------------------------------------


def fit_temperature(logits: np.ndarray, targets, bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
                    tol: float = 1e-5) -> float:
    """The temperature T in `bounds` minimizing the NLL of softmax(logits / T): golden-section search on log T.

    NLL is convex in 1/T, hence unimodal in log T, so the search finds the minimum; it is deterministic."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = as_targets(targets, logits.shape[1])
    loss = lambda log_t: negative_log_likelihood(logits / math.exp(log_t), targets)  # noqa: E731
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > tol:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float(math.exp((lo + hi) / 2))


def fit_vector_scaling(logits: np.ndarray, targets, l2: float = VECTOR_L2) -> tuple[np.ndarray, np.ndarray]:
    """Per-label weights w and biases b minimizing NLL(softmax(w * logits + b)) + l2/2 (|w - 1|^2 + |b|^2), by
    L-BFGS from w = 1, b = 0 (deterministic). Unlike a temperature, this can change which label wins."""
    from scipy.optimize import minimize

    logits = np.asarray(logits, dtype=np.float64)
    n, k = logits.shape
    targets = as_targets(targets, k)

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:k], params[k:]
        log_p = log_softmax(logits * w + b)
        d = (np.exp(log_p) - targets) / n
        loss = -(targets * log_p).sum() / n + l2 / 2 * (((w - 1) ** 2).sum() + (b**2).sum())
        return loss, np.concatenate([(d * logits).sum(axis=0) + l2 * (w - 1), d.sum(axis=0) + l2 * b])

    start = np.concatenate([np.ones(k), np.zeros(k)])
    result = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": 1e-8})
    return result.x[:k], result.x[k:]


def temperature_field(temperature: float) -> dict:
    return {"method": "temperature", "temperature": round(float(temperature), 6)}


def vector_field(weights: np.ndarray, biases: np.ndarray) -> dict:
    return {"method": "vector", "weights": [round(float(w), 6) for w in weights],
            "biases": [round(float(b), 6) for b in biases]}


def fit_calibration(logits: np.ndarray, targets, method: str = "temperature") -> dict:
    """The `model.json["calibration"]` parameters (method and its numbers) fitted on `logits` against `targets`."""
    if method == "temperature":
        return temperature_field(fit_temperature(logits, targets))
    if method == "vector":
        return vector_field(*fit_vector_scaling(logits, targets))
    raise ValueError(f"unknown calibration method {method!r}: use 'temperature' or 'vector'")


def apply_calibration(field: dict | None, logits: np.ndarray) -> np.ndarray:
    """Probabilities exactly as serving computes them from `logits` under `field` (the serving code, reused)."""
    return Calibration.from_meta(field, logits.shape[1]).probabilities(np.asarray(logits, dtype=np.float32))


# --- the served model ------------------------------------------------------------------------------------------


def served_logits(classifier: Classifier, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Uncalibrated logits of `texts` in input order, from the batches the scoring core forms (length-sorted within
    its window); a graph that outputs probabilities gives their logarithms, which is what calibration scales."""
    records = [Record(line=i + 1, text=t) for i, t in enumerate(texts)]
    rows = [out for _, out in scored_in_order(records, classifier.outputs, batch_size, lengths=classifier.lengths)]
    out = np.stack(rows).astype(np.float32) if rows else np.zeros((0, len(classifier.labels)), dtype=np.float32)
    if classifier.meta.get("output", {}).get("kind") == "probabilities":
        out = np.log(np.maximum(out, np.finfo(np.float32).tiny))
    return out


def write_calibration(model_dir: str | Path, field: dict) -> Path:
    """Replace `model.json["calibration"]` with `field`, atomically; the model file and its sha256 are untouched."""
    meta_path = Path(model_dir) / "model.json"
    meta = read_model_meta(Path(model_dir))
    meta["calibration"] = field
    fd, tmp = temp_beside(meta_path)  # 0644: a 0600 model.json would be unreadable inside a Lambda layer
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, meta_path)
    return meta_path


def fit_and_write(model_dir: str | Path, logits: np.ndarray, targets, *, fitted_on: str,
                  method: str = "temperature") -> dict:
    """Fit `method` on served `logits`, write it into model.json with ECE before/after on the fit data; the report."""
    params = fit_calibration(logits, targets, method)
    before = calibration_report(apply_calibration(None, logits), targets)
    after = calibration_report(apply_calibration(params, logits), targets)
    field = {**params, "fitted_on": fitted_on, "n": int(len(logits)), "ece_before": before["ece"],
             "ece_after": after["ece"]}
    write_calibration(model_dir, field)
    return {"calibration": field, "before": before, "after": after}


def calibrate_model_dir(model_dir: str | Path, texts: Sequence[str], targets, *, fitted_on: str,
                        method: str = "temperature", threads: int | None = None) -> dict:
    """Score `texts` with the serving classifier of `model_dir`, fit `method` against `targets` (label ids or
    probability rows, in the directory's label order), write `model.json["calibration"]` and return the report:
    `{"calibration": <the field written>, "before": calibration_report, "after": calibration_report}`."""
    classifier = Classifier.from_dir(model_dir, threads=threads)
    return fit_and_write(model_dir, served_logits(classifier, texts), targets, fitted_on=fitted_on, method=method)


def calibration_reports(model_dir: str | Path, named_sets: Mapping[str, tuple[Sequence[str], object]], *,
                        diagram: str | Path | None = None, threads: int | None = None) -> dict:
    """For each named `(texts, targets)` set, `{"before": report, "after": report}`: the served model without its
    calibration (temperature 1) and with the one in its model.json; with `diagram`, also their reliability diagram."""
    classifier = Classifier.from_dir(model_dir, threads=threads)
    field = classifier.meta.get("calibration")
    reports, panels = {}, {}
    for name, (texts, targets) in named_sets.items():
        logits = served_logits(classifier, texts)
        before, after = apply_calibration(None, logits), apply_calibration(field, logits)
        reports[name] = {"before": calibration_report(before, targets), "after": calibration_report(after, targets)}
        panels[name] = (before, after, targets)
    if diagram:
        reliability_diagram(panels, diagram)
    return reports


def reliability_diagram(named_probs_labels: Mapping[str, tuple[np.ndarray, np.ndarray, object]], path: str | Path,
                        n_bins: int = N_BINS) -> Path:
    """A PNG with one panel per data set: accuracy against confidence per bin, before and after calibration.

    `named_probs_labels` maps a data set's name to `(probs_before, probs_after, labels)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(named_probs_labels), figsize=(5 * len(named_probs_labels), 5), squeeze=False)
    for ax, (name, (before, after, labels)) in zip(axes[0], named_probs_labels.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
        for probs, tag, color in ((before, "before", "tab:red"), (after, "after", "tab:blue")):
            count, confidence, correct = confidence_bins(probs, labels, n_bins)
            used = count > 0
            ece = np.abs(correct - confidence).sum() / count.sum()
            ax.plot(confidence[used] / count[used], correct[used] / count[used], marker="o", color=color,
                    label=f"{tag}: ECE {ece:.3f}")
            ax.scatter(confidence[used] / count[used], correct[used] / count[used],
                       s=8 + 300 * count[used] / count.max(), color=color, alpha=0.3)
        ax.set(title=f"{name} (n={len(before)})", xlabel="confidence (top score)", ylabel="accuracy",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left")
    fig.suptitle(f"Reliability, {n_bins} equal-width bins (marker area: rows in the bin)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- data --------------------------------------------------------------------------------------------------------


@dataclass
class LabelledSet:
    """Texts with targets in a model's label order: one probability row per text (one-hot for a single label)."""

    name: str
    texts: list[str]
    targets: np.ndarray
    dropped: int = 0
    """E-c rows left out: those carrying none of the labels (with `@single`, also those carrying several)."""


def load_labelled(spec: str, labels: Sequence[str]) -> LabelledSet:
    """Read a data spec (`PATH`, `PATH@val`, `PATH@A:B`, `PATH@single`; see the module docstring)."""
    from training.data import (Splits, add_real_tweets, load_ec, load_examples, single_label, stratified_split,
                               target_matrix)

    path_text, _, part = spec.partition("@")
    path = Path(path_text)
    if not path.is_file():
        raise ValueError(f"{path}: file not found (data spec {spec!r})")
    if path.suffix.lower() == ".tsv":
        if part == "val":
            if path.name != "train.tsv":
                raise ValueError(f"{spec}: @val of E-c is the part of train.tsv the training job holds out")
            examples = add_real_tweets(Splits([], [], [], list(labels)), path.parent).extra_val["ec-val"]
            considered = len(examples)
        elif part == "single":
            examples, considered = single_label(load_ec(path, labels, multi="drop")), _data_rows(path)
        else:
            kept = set(_slice(spec, part, list(range(_data_rows(path)))))
            examples = [e for e in load_ec(path, labels) if e.line - 2 in kept]  # line 1 is the header
            considered = len(kept)
        return LabelledSet(spec, [e.text for e in examples], target_matrix(examples, labels),
                           dropped=considered - len(examples))
    examples = load_examples(path, labels)
    if part == "val":
        examples = stratified_split(examples, 0.1, 13)[1]
    elif part == "single":
        raise ValueError(f"{spec}: @single selects E-c rows with one label; {path.name} has one label per row already")
    else:
        examples = _slice(spec, part, examples)
    return LabelledSet(spec, [e.text for e in examples], target_matrix(examples, labels))


def _data_rows(path: Path) -> int:
    """Lines after the header: an E-c example on line n is data row n - 2."""
    with open(path, encoding="utf-8-sig") as fh:
        return sum(1 for _ in fh) - 1


def _slice(spec: str, part: str, rows: list) -> list:
    if ":" not in part:
        return rows
    try:
        start, stop = (float(x) if x else default for x, default in zip(part.split(":"), (0.0, 1.0)))
    except ValueError:
        raise ValueError(f"{spec}: @A:B takes fractions of the file, e.g. @0.9:1 for the last 10%") from None
    if not 0 <= start < stop <= 1:
        raise ValueError(f"{spec}: @A:B needs 0 <= A < B <= 1, got {part}")
    return rows[round(start * len(rows)): round(stop * len(rows))]


# --- command line ----------------------------------------------------------------------------------------------


def compare_methods(logits_fit: np.ndarray, targets_fit, report_sets: Mapping[str, tuple[np.ndarray, object]]) -> dict:
    """Fit temperature and vector scaling on the fit data; each one's report on every report set (and uncalibrated)."""
    fields = {"none": None, "temperature": fit_calibration(logits_fit, targets_fit, "temperature"),
              "vector": fit_calibration(logits_fit, targets_fit, "vector")}
    sets = {"fit": (logits_fit, targets_fit), **report_sets}
    return {"fields": fields,
            "reports": {name: {m: calibration_report(apply_calibration(f, logits), targets) for m, f in fields.items()}
                        for name, (logits, targets) in sets.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="serving directory (model.json, model.onnx, tokenizer)")
    parser.add_argument("--fit-data", action="append", required=True, metavar="SPEC",
                        help="held-out data to fit on (repeatable; never the test or report data)")
    parser.add_argument("--report-data", action="append", default=[], metavar="SPEC",
                        help="data to report ECE on, before and after (repeatable)")
    parser.add_argument("--fit-rows", choices=("single", "all"), default="single",
                        help="fit on rows with exactly one label (default; what a score claims to be right about) or "
                             "on every row, multi-label E-c rows with their soft targets")
    parser.add_argument("--method", choices=("temperature", "vector"), default="temperature",
                        help="what --write stores (both are always fitted and reported)")
    parser.add_argument("--write", action="store_true", help="store the fit in model.json['calibration']")
    parser.add_argument("--diagram", metavar="PNG", help="write a reliability diagram of the report data")
    parser.add_argument("--json", metavar="PATH", help="write the full comparison as JSON")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    ns = parser.parse_args(argv)

    classifier = Classifier.from_dir(ns.model, threads=ns.threads)
    try:
        fit_sets = [load_labelled(s, classifier.labels) for s in ns.fit_data]
        report_sets = [load_labelled(s, classifier.labels) for s in ns.report_data]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    k = len(classifier.labels)
    fit_logits = np.concatenate([served_logits(classifier, s.texts) for s in fit_sets])
    fit_targets = np.concatenate([as_targets(s.targets, k) for s in fit_sets])
    left_out = 0
    if ns.fit_rows == "single":
        keep = single_label_rows(fit_targets)
        left_out = int((~keep).sum())
        print(f"fitting on the {int(keep.sum())} of {len(keep)} fit rows that carry exactly one label")
        fit_logits, fit_targets = fit_logits[keep], fit_targets[keep]
    reported = {s.name: (served_logits(classifier, s.texts), s.targets) for s in report_sets}
    result = compare_methods(fit_logits, fit_targets, reported)
    for s in fit_sets + report_sets:
        why = "not exactly one of the labels" if s.name.endswith("@single") else "none of the labels"
        print(f"{s.name}: {len(s.texts)} rows" + (f" ({s.dropped} left out: {why})" if s.dropped else ""))
    print(f"temperature: {result['fields']['temperature']['temperature']}")
    print(f"{'data':<48} {'method':<12} {'ECE':>7} {'NLL':>7} {'Brier':>7} {'acc':>7} {'conf':>7}")
    for name, by_method in result["reports"].items():
        for method, r in by_method.items():
            print(f"{name:<48} {method:<12} {r['ece']:>7.4f} {r['nll']:>7.4f} {r['brier']:>7.4f} "
                  f"{r['accuracy']:>7.4f} {r['mean_confidence']:>7.4f}")
    if ns.write:
        fitted_on = " + ".join(s.name for s in fit_sets) + (f" ({left_out} multi-label rows left out)" if left_out else "")
        written = fit_and_write(ns.model, fit_logits, fit_targets, fitted_on=fitted_on, method=ns.method)
        print(f"wrote {Path(ns.model) / 'model.json'}: {json.dumps(written['calibration'])}")
    if ns.diagram:
        field = result["fields"][ns.method]
        # Panel titles: the data set's folder and file name with its part, not the whole path.
        panels = {"/".join(Path(name).parts[-2:]): (apply_calibration(None, logits), apply_calibration(field, logits),
                                                    targets)
                  for name, (logits, targets) in reported.items()}
        print(f"wrote {reliability_diagram(panels, ns.diagram)}")
    if ns.json:
        Path(ns.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
