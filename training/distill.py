"""Knowledge distillation: soft targets from an ensemble of fine-tuned checkpoints, for one student to learn.

An ensemble of runs that differ in seed, learning rate or preprocessing is more accurate than any
one of them, but costs its size in inference. Distillation (Hinton et al., 2015, "Distilling the
knowledge in a neural network") trains a single model of the shipped size on the ensemble's
averaged class probabilities as well as on the labels, so serving pays for one model.

Each teacher reads text the way it was trained (its checkpoint's `tweetmood_training.json` names
the preprocessing), so a teacher trained without stop words still teaches a student that sees raw,
normalized text. Teacher probabilities are computed once per text on the clean text; rawify
augmentation changes the surface of a tweet, not its emotion, so the augmented copy keeps the
clean text's soft target.

    python -m training.distill --teachers runs/a/checkpoint,runs/b/checkpoint --data-dir DIR   # ensemble report
    python -m training.transformer --teachers runs/a/checkpoint,runs/b/checkpoint ...           # distil a student
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from training.data import load_splits
from training.evaluate import classification_report

log = logging.getLogger(__name__)


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
    from tweetmood.classifier import Classifier

    classifier = Classifier.from_dir(model_dir)
    if sorted(classifier.labels) != sorted(labels):
        raise ValueError(f"teacher {model_dir} predicts {classifier.labels}, the data has {list(labels)}")
    probs = np.concatenate([classifier.predict_proba(list(texts[i: i + 256])) for i in range(0, len(texts), 256)])
    return np.log(np.clip(probs[:, [classifier.labels.index(label) for label in labels]], 1e-9, 1.0))


def teacher_logits(checkpoint: Path, texts: Sequence[str], labels: Sequence[str], *, device: torch.device,
                   batch_size: int = 128, max_length: int = 64, cache_dir: Path | None = None) -> np.ndarray:
    """One teacher's logits for `texts`, columns in `labels` order; cached on disk by checkpoint and texts."""
    from training.transformer import _load, encode, make_preprocess, predict

    key = hashlib.sha256()
    key.update(str(checkpoint.resolve()).encode())
    weights = checkpoint / "model.safetensors"
    if not weights.exists():
        weights = checkpoint / "model.onnx"
    key.update(str(weights.stat().st_mtime_ns if weights.exists() else 0).encode())  # retrained in place: new key
    for t in texts:
        key.update(t.encode("utf-8", "surrogatepass") + b"\0")
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
    logits = predict(model, ids, batch_size=batch_size, device=device,
                     bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(), pad_id=pad_id)
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


def main(argv: list[str] | None = None) -> int:
    """Score the teacher ensemble (and each teacher) on validation and test: is it worth distilling?"""
    from training.transformer import resolve_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m training.distill", description=main.__doc__)
    p.add_argument("--teachers", required=True, help="comma-separated checkpoint directories")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/teacher-cache"))
    args = p.parse_args(argv)
    splits = load_splits(args.data_dir)
    teachers = parse_teachers(args.teachers)
    device = resolve_device(args.device)
    report = {}
    for name, examples in (("val", splits.val), ("test", splits.test)):
        texts, y = [e.text for e in examples], splits.label_ids(examples)
        rows = {}
        for t in teachers:
            probs = ensemble_probs([t], texts, splits.labels, device=device, cache_dir=args.cache_dir)
            r = classification_report(y, probs.argmax(1).tolist(), splits.labels)
            rows[str(t)] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}
        probs = ensemble_probs(teachers, texts, splits.labels, device=device, cache_dir=args.cache_dir)
        r = classification_report(y, probs.argmax(1).tolist(), splits.labels)
        rows["ensemble"] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}
        report[name] = rows
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
