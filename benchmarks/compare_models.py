"""Two serving models' speed as a ratio measured in one process, rounds interleaved, one onnxruntime thread.

    python -m benchmarks.compare_models NEW_DIR OLD_DIR [--texts FILE] [--rounds 5]

`OLD_DIR` may be `git:REV:PATH` (a model an earlier commit shipped, e.g. git:5038739:layers/model/model). A ratio
from interleaved rounds survives a busy machine far better than two figures taken minutes apart: each round scores
the same texts with both models back to back, and the report gives the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from training.distill import from_git
from training.export import tweets_per_second
from training.report import cpu_name
from tweetmood.classifier import Classifier


def model_dir(spec: str) -> Path:
    return from_git(*spec[4:].split(":", 1)) if spec.startswith("git:") else Path(spec)


def compare(new: Path, old: Path, texts: list[str], rounds: int) -> dict:
    """Per-round tweets/s of both models (same texts, same core batching, 1 thread) and the median ratio."""
    models = {"new": Classifier.from_dir(new, threads=1), "old": Classifier.from_dir(old, threads=1)}
    runs: dict[str, list[float]] = {"new": [], "old": []}
    for r in range(rounds):
        for name in (("new", "old") if r % 2 == 0 else ("old", "new")):
            runs[name].append(tweets_per_second(models[name], texts))
    ratios = [n / o for n, o in zip(runs["new"], runs["old"])]
    return {"new": {"dir": str(new), "version": models["new"].version, "tweets_per_s": runs["new"]},
            "old": {"dir": str(old), "version": models["old"].version, "tweets_per_s": runs["old"]},
            "median_ratio_new_over_old": statistics.median(ratios), "ratios": ratios, "n_texts": len(texts),
            "threads": 1, "cpu": cpu_name()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare_models", description=__doc__.splitlines()[0])
    parser.add_argument("new")
    parser.add_argument("old")
    parser.add_argument("--texts", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
                        / "emotion" / "test.txt", help="text;label file whose texts are scored (default test.txt)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    texts = [line.rpartition(";")[0] for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(json.dumps(compare(model_dir(args.new), model_dir(args.old), texts, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
