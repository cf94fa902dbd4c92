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

import numpy as np

from training.data import load_splits, resolve_real_tweets_dir, single_label
from training.evaluate import classification_report
# The teacher code lives beside the training loop that uses it, so transformer.py never imports this module:
# distill -> transformer only, no import cycle.
from training.transformer import (  # noqa: F401  (this module's public names)
    distillation_loss, ensemble_probs, from_git, parse_teachers, resolve_device, selection_score, serving_logits,
    teacher_logits, teacher_preprocess,
)


def ensemble_report(teachers: list[Path], splits, *, device, cache_dir: Path | None) -> dict:
    """Accuracy and macro-F1 of each teacher and of their ensemble on every evaluation set the splits carry (the
    emotion validation split, held-out E-c "ec-val", E-c dev "ec-dev", test), single-label rows only, plus the
    selection score training uses. How far a student distilled from them could go: an ensemble is its teacher."""
    named = {"val": splits.val, **splits.extra_val, "test": splits.test}
    report: dict[str, dict] = {}
    for name, examples in named.items():
        examples = single_label(examples)
        texts, y = [e.text for e in examples], splits.label_ids(examples)
        each = {str(t): ensemble_probs([t], texts, splits.labels, device=device, cache_dir=cache_dir) for t in teachers}
        each["ensemble"] = np.mean(list(each.values()), axis=0)  # what ensemble_probs(teachers) averages
        rows = {who: classification_report(y, probs.argmax(1).tolist(), splits.labels) for who, probs in each.items()}
        report[name] = {who: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "n": len(y)}
                        for who, r in rows.items()}
    used = [name for name in ("val", "ec-val") if name in report]
    report["selection"] = {who: selection_score({name: report[name][who] for name in used}) for who in report["val"]}
    return report


def main(argv: list[str] | None = None) -> int:
    """Score the teacher ensemble (and each teacher) on validation, real tweets and test: is it worth distilling?"""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m training.distill", description=main.__doc__)
    p.add_argument("--teachers", required=True, help="comma-separated checkpoint or serving directories")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--real-tweets-dir", default="auto",
                   help="SemEval-2018 E-c directory: adds held-out E-c (ec-val) and E-c dev (ec-dev); none = off")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/teacher-cache"))
    args = p.parse_args(argv)
    splits = load_splits(args.data_dir, real_tweets_dir=resolve_real_tweets_dir(args.real_tweets_dir, args.data_dir))
    report = ensemble_report(parse_teachers(args.teachers), splits, device=resolve_device(args.device),
                             cache_dir=args.cache_dir)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
