"""Per-model metrics.json and confusion-matrix PNG measured through the serving Classifier, and docs/training.md."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Sequence

import numpy as np

from training.data import Example, Splits
from training.evaluate import classification_report
from tweetmood.classifier import Classifier

# Reference figures on the same test.txt (shared/data/emotion/README.md), shown beside ours.
REFERENCE_ROWS = [
    {"model": "original notebook: TF-IDF + DNN", "accuracy": 0.8555},
    {"model": "original notebook: BiLSTM", "accuracy": 0.8855},
    {"model": "original notebook: DistilBERT-multilingual-cased", "accuracy": 0.9005},
    {"model": "published: distilbert-base-uncased", "accuracy": 0.927, "macro_f1": 0.8825},
    {"model": "published: roberta-base", "accuracy": 0.931, "macro_f1": 0.882},
]


def cpu_name() -> str:
    """The CPU model, for the device column (a speed is meaningless without it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def predict_scores(classifier: Classifier, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Served probabilities, a row per text, through the serving path (normalization, encoder, session)."""
    out = [classifier.predict_proba(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(classifier.labels)), dtype=np.float32)


def predict_labels(classifier: Classifier, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Label indices through the serving path (normalization, encoder, session)."""
    return predict_scores(classifier, texts, batch_size).argmax(1)


def served_report(classifier: Classifier, examples: Sequence[Example]) -> dict:
    """Accuracy, macro-F1, per-class scores and confusion matrix of the served model on single-label `examples`."""
    index = {label: i for i, label in enumerate(classifier.labels)}
    return classification_report([index[e.label] for e in examples],
                                 predict_labels(classifier, [e.text for e in examples]), classifier.labels)


def mixed_emotion_report(classifier: Classifier, examples: Sequence[Example]) -> dict:
    """How the served model ranks tweets that carry two or more emotions (rows with a soft target, in the label order
    of training): the share whose top label is one of theirs, and, over the rows with exactly two, the share whose top
    two labels are those two."""
    if any(len(e.targets) != len(classifier.labels) for e in examples):
        raise ValueError(f"mixed rows must carry a target over the model's {len(classifier.labels)} labels")
    carried = [{i for i, t in enumerate(e.targets) if t > 0} for e in examples]
    ranked = np.argsort(-predict_scores(classifier, [e.text for e in examples]), axis=1)
    two = [i for i, c in enumerate(carried) if len(c) == 2]

    def share(hits: list[bool]) -> float | None:
        return round(float(np.mean(hits)), 4) if hits else None

    return {"n": len(examples), "top1_in_labels": share([ranked[i, 0] in c for i, c in enumerate(carried)]),
            "n_two": len(two), "top2_are_labels": share([set(ranked[i, :2]) == carried[i] for i in two])}


def measure_tweets_per_second(model_dir: str | Path, texts: Sequence[str], batch_size: int = 64) -> float:
    """CPU tweets/s of the served model with one onnxruntime thread, normalization and tokenization included."""
    from training.export import tweets_per_second

    return tweets_per_second(Classifier.from_dir(model_dir, threads=1), texts, batch_size)


def real_tweet_sets(splits: Splits) -> dict:
    """E-c dev's single-label and mixed rows when the splits carry real tweets, as `evaluate_model_dir` arguments."""
    return {"real_tweets": splits.extra_val.get("ec-dev"), "mixed_tweets": splits.report_only.get("ec-dev-mixed")}


def evaluate_model_dir(model_dir: str | Path, test: Sequence[Example], raw_test: Sequence[Example] | None = None,
                       *, train_time_s: float | None = None, device: str | None = None, extra: dict | None = None,
                       speed: bool = True, real_tweets: Sequence[Example] | None = None,
                       mixed_tweets: Sequence[Example] | None = None) -> dict:
    """Evaluate a serving directory on `test` (and `raw_test`, and `real_tweets`: E-c dev's single-label rows, as
    metrics["ec_dev"], and `mixed_tweets`: its rows with two or more of the labels, as metrics["ec_dev_mixed"])
    through `Classifier` and merge the result into its metrics.json (keys the trainer wrote, such as parity or
    history, are kept). Also writes confusion_matrix.png."""
    model_dir = Path(model_dir)
    classifier = Classifier.from_dir(model_dir)
    texts = [e.text for e in test]
    report = served_report(classifier, test)
    metrics_path = model_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    metrics.update(report)
    metrics["test"] = report
    if raw_test is not None:
        metrics["raw_test"] = served_report(classifier, raw_test)
    if real_tweets:
        metrics["ec_dev"] = served_report(classifier, real_tweets)
    if mixed_tweets:
        metrics["ec_dev_mixed"] = mixed_emotion_report(classifier, mixed_tweets)
    if train_time_s is not None:
        metrics["train_time_s"] = round(float(train_time_s), 1)
    if device is not None:
        metrics["device"] = device
    metrics["version"] = classifier.version
    metrics["quantization"] = classifier.meta.get("quantization", "none")
    metrics["model_bytes"] = (model_dir / classifier.meta.get("model_file", "model.onnx")).stat().st_size
    if speed:
        metrics["cpu_tweets_per_s"] = round(measure_tweets_per_second(model_dir, texts), 1)
        metrics["cpu_benchmark"] = {"threads": 1, "batch_size": 64, "n": len(texts), "cpu": cpu_name(),
                                    "note": "onnxruntime through tweetmood.Classifier and the core's batches (sorted by "
                                            "token count in windows of 1,024), normalization and tokenization included"}
    metrics.update(extra or {})
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_confusion_matrix(report, model_dir / "confusion_matrix.png", title=f"{classifier.version} (test)")
    return metrics


def plot_confusion_matrix(report: dict, out_path: str | Path, title: str = "") -> Path:
    """A confusion-matrix PNG (rows true, columns predicted; cells counts, colour row share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(report["confusion_matrix"], dtype=float)
    labels = report["labels"]
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title or f"accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}", fontsize=9)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def _fmt(value, spec: str = ".4f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "–"


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def table_row(name: str, metrics: dict) -> dict:
    """The docs/training.md columns from a model's metrics.json."""
    raw = metrics.get("raw_test") or metrics.get("test_raw") or {}
    return {
        "model": name,
        "accuracy": metrics.get("accuracy", metrics.get("test", {}).get("accuracy")),
        "macro_f1": metrics.get("macro_f1", metrics.get("test", {}).get("macro_f1")),
        "raw_accuracy": raw.get("accuracy"),
        "ec_dev_accuracy": (metrics.get("ec_dev") or {}).get("accuracy"),
        "ec_dev_macro_f1": (metrics.get("ec_dev") or {}).get("macro_f1"),
        "train_time_s": metrics.get("train_time_s"),
        "device": metrics.get("device"),
        "model_bytes": metrics.get("model_bytes"),
        "cpu_tweets_per_s": metrics.get("cpu_tweets_per_s"),
    }


def results_table(rows: Sequence[dict], references: Sequence[dict] = REFERENCE_ROWS) -> str:
    """Markdown: Model | Accuracy | Macro-F1 | Raw-test accuracy | Real tweets (E-c dev) | Train time | Device |
    Model size | CPU tweets/s."""
    lines = ["| Model | Accuracy | Macro-F1 | Raw-test accuracy | Real tweets (E-c dev) acc / macro-F1 | Train time "
             "| Device | Model size | CPU tweets/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['model_bytes'] / 1e6:.1f} MB" if isinstance(r.get("model_bytes"), (int, float)) else "–"
        lines.append(f"| {r['model']} | {_fmt(r.get('accuracy'))} | {_fmt(r.get('macro_f1'))} | "
                     f"{_fmt(r.get('raw_accuracy'))} | {_fmt(r.get('ec_dev_accuracy'))} / {_fmt(r.get('ec_dev_macro_f1'))} | "
                     f"{_duration(r.get('train_time_s'))} | {r.get('device') or '–'} | "
                     f"{size} | {_fmt(r.get('cpu_tweets_per_s'), '.0f')} |")
    for r in references:
        lines.append(f"| {r['model']} (reference) | {_fmt(r.get('accuracy'))} | {_fmt(r.get('macro_f1'))} | – | – | – | – | – | – |")
    return "\n".join(lines)


DOC_INTRO = """# Training

`python -m training all` (or `tweetmood-train all`) rebuilds every model this project reports and the serving
artifact it ships, from `../shared/data/emotion/` (or `--data-dir`), into `--output-dir` (default `runs/latest`):

1. **Data** (`training/data.py`): `train.txt` and `test.txt`; a seeded, stratified 10% validation split is carved
   out of train. The test file is never used for training or tuning. Real tweets: SemEval-2018 E-c
   (`--real-tweets-dir`, default `../shared/data/semeval2018-ec/`): rows with exactly one of our six emotions train as
   that label, rows with several as a soft target spread evenly over them, rows with none are left out; a seeded
   tenth of E-c train is held out ("ec-val"); E-c dev's single-label rows ("ec-dev", 444) are reported every epoch
   and at the end, never trained or selected on.
2. **Transformer** (`training/transformer.py`): fine-tunes MiniLM-L6 on texts normalized with
   `tweetmood.normalize.normalize_tweet` (the version `NORMALIZATION_VERSION` names, recorded in model.json; the
   function serving applies), optionally distilling teachers (`--teachers`: checkpoints, serving directories, or
   `git:REV:PATH` for a model an earlier commit shipped) on the rows `--teacher-sources` names; picks the best
   evaluation by the mean of emotion-validation macro-F1 and ec-val accuracy; saves a Hugging Face checkpoint
   under `<output-dir>/transformer/checkpoint/`.
3. **Export** (`training/export.py`): ONNX export with optimum (dynamic batch and sequence axes), fused with
   onnxruntime's BERT optimizer (attention, LayerNorm, GELU; checked to match the plain export within 1e-4) for the
   float32 artifact; the int8 artifact is quantized from the plain export (`--quantization`, default
   `int8-static-fused`).
   `int8-static-fused` starts from onnxruntime's dynamic int8 graph (per-channel int8 weights, int8 embedding rows),
   fixes every activation scale at calibration (MinMax over 512 training texts, one tweet at a time, so padding never
   widens a range) and writes each quantized product as one `MatMulIntegerToFloat`, the fused uint8 x int8 kernel
   dynamic int8 runs. Fixed scales make a tweet's scores independent of the other tweets in its call (tested:
   identical alone, in order or shuffled), so `model.json` says `"execution": "batched"` and the core scores
   length-sorted batches. Dynamic int8 (`int8-dynamic-embeddings`) computes its scales per call and is served one
   tweet per call (`"execution": "per-row"`); onnxruntime's own static QDQ int8 (`int8-static`) left half the
   products on dequantized float weights and gained only 1.1-1.5x over float32 (table below).
4. **Parity gate**: the int8 serving directory, loaded with `tweetmood.classifier.Classifier` exactly as Lambda loads
   it, must agree with the float32 PyTorch model on at least 99% of test labels and lose at most 0.5 accuracy points;
   otherwise the command stops with a non-zero exit and nothing is shipped. The result is in `metrics.json["parity"]`.
   **Calibration** (`training/calibrate.py`): one temperature, fitted on the int8 model as served over the emotion
   validation split and ec-val, is written to `model.json["calibration"]`; serving divides logits by it, so scores
   are calibrated probabilities. ECE (15 bins) before/after on test.txt and E-c dev, and a reliability diagram.
5. **Baselines** (`training/baselines.py`): TF-IDF + DNN and BiLSTM, as in the original notebooks, exported to ONNX
   serving directories too.
6. **Reports** (`training/report.py`): every serving directory is evaluated through `Classifier` on the clean test
   file and on the raw test file (the same tweets with case, punctuation, emoji, URLs and @mentions restored by
   `training/rawify.py`, see docs/raw-test.md): `metrics.json` (accuracy, macro-F1, per-class precision/recall/F1,
   confusion matrix, train time, device, model size, CPU tweets/s at one onnxruntime thread) and
   `confusion_matrix.png`; then this file's table.
7. **Ship** (`--ship`): copies the int8 serving directory to `layers/model/model/`, which `sam build` packs as the
   model layer. **Publish**: `python -m training publish --model DIR s3://bucket/prefix/` uploads it under its
   content-addressed version and prints the `MODEL_URI` to set.

Single steps: `python -m training transformer|baselines`, `export --checkpoint DIR [--quantization Q]`,
`evaluate --model DIR`, `publish --model DIR s3://…`, `sagemaker [--dry-run]` (the same code as a SageMaker training
job on a GPU instance), `compare-quantizations --checkpoint DIR` (the table under "Quantization").
"""


QUANTIZATION_HEADING = "## Quantization"


def write_training_doc(path: str | Path, rows: Sequence[dict], quantization_rows: Sequence[dict] | None = None,
                       notes: str = "") -> Path:
    """docs/training.md: how to run, what each step does, the results table (and the quantization comparison)."""
    parts = [DOC_INTRO, "## Results on test.txt (2,000 tweets)", "",
             "Every row of ours is measured through the serving code (`Classifier`) on the exported artifact. "
             "CPU tweets/s: one onnxruntime thread, batches of 64, normalization and tokenization included, on the "
             f"machine that ran the job ({cpu_name()}).", ""]
    if not rows:
        parts += ["Our rows appear here once `python -m training all` has run; until then, the references alone.", ""]
    parts += [results_table(rows), ""]
    path = Path(path)
    if quantization_rows:
        parts += [QUANTIZATION_HEADING, "", quantization_table(quantization_rows), ""]
    elif path.is_file() and QUANTIZATION_HEADING in path.read_text(encoding="utf-8"):
        # The comparison is its own command (compare-quantizations); a training run keeps the last one written.
        text = path.read_text(encoding="utf-8")
        parts += [text[text.index(QUANTIZATION_HEADING):].rstrip(), ""]
    if notes:
        parts += [notes.strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def quantization_table(rows: Sequence[dict]) -> str:
    """Markdown of `training.export.compare_quantizations` rows."""
    lines = ["| Quantization | Size | Tweets/s (1 thread) | Batch-independence max diff | Label agreement with fp32 torch | Max logit diff | Kernels run |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ops = ", ".join(f"{k}×{v}" for k, v in r.get("runtime_ops", {}).items() if k not in ("Gather", "Softmax", "Gemm", "FusedGemm", "Tanh"))
        lines.append(f"| {r['quantization']} | {r['size_mb']:.1f} MB | {r['tweets_per_s_1_thread']:.0f} | "
                     f"{r['batch_independence_max_abs_diff']:.1e} | {_fmt(r.get('agreement'))} | {_fmt(r.get('max_logit_diff'))} | {ops} |")
    return "\n".join(lines)

