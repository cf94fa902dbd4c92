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
import json
import logging
from pathlib import Path

from training.data import load_splits
from training.evaluate import classification_report
# The teacher code lives beside the training loop that uses it, so transformer.py never imports this module:
# distill -> transformer only, no import cycle.
from training.transformer import (  # noqa: F401  (this module's public names)
    distillation_loss, ensemble_probs, from_git, parse_teachers, resolve_device, serving_logits, teacher_logits,
    teacher_preprocess,
)


def main(argv: list[str] | None = None) -> int:
    """Score the teacher ensemble (and each teacher) on validation and test: is it worth distilling?"""
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
