"""`tweetmood score FILE|FOLDER|GLOB|s3://bucket/prefix/` and `tweetmood demo`: the core's code paths on a laptop."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

from tweetmood.classifier import ModelError
from tweetmood.readers import FORMAT_NAMES
from tweetmood.settings import Settings, SettingsError

# cli/tweetmood_cli/cli.py -> layers/model/model: the shipped artifact in a checkout.
REPO_MODEL_DIR = Path(__file__).resolve().parents[2] / "layers" / "model" / "model"


def default_model_dir(settings: Settings, env=os.environ) -> str:
    """MODEL_DIR when set explicitly, else the checkout's layers/model/model when it holds a model, else /opt/model."""
    if env.get("MODEL_DIR", "").strip():
        return settings.model_dir
    if (REPO_MODEL_DIR / "model.json").is_file():
        return str(REPO_MODEL_DIR)
    return settings.model_dir


def machine_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tweetmood", description="Score the emotions in files of tweets.")
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score local files or S3 objects")
    score.add_argument("input", help=f"a {FORMAT_NAMES} file (optionally .gz), a folder, a quoted glob such as "
                                     "'data/*.csv', s3://bucket/key or s3://bucket/prefix/")
    score.add_argument("--output", help="where results go: a file for one local input, a folder for several "
                                        "(default: <input>.scored.jsonl beside each input, or the output key in S3)")
    score.add_argument("--format", choices=("jsonl", "csv"), help="result format (default: OUTPUT_FORMAT or jsonl)")
    score.add_argument("--model", help="model directory (default: MODEL_DIR, else layers/model/model, else /opt/model)")
    score.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://127.0.0.1:5000 for a local stack")
    score.add_argument("--batch-size", type=_positive, help="tweets per model call (default: BATCH_SIZE or 64)")
    score.add_argument("--workers", type=_positive, default=None,
                       help=f"processes scoring chunks at once (default: this machine's cores, {machine_cores()})")
    score.add_argument("--threads", type=_positive, default=1, help="onnxruntime threads per worker (default 1)")
    score.add_argument("--force", action="store_true", help="score an S3 object again even if its manifest is complete")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("demo", help="score the sample tweets on an embedded local S3 through the real Lambda handler")
    report = sub.add_parser("report", help="summarise result files (local or s3://bucket/prefix/), optionally as an HTML page")
    _report().add_arguments(report)
    return parser


def _report():
    """tweetmood_cli.report, imported only when asked for: the Lambda layer carries neither it nor DuckDB."""
    from tweetmood_cli import report

    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        return _report().run(args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"tweetmood: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        from tweetmood_cli.localstack import run_demo

        return run_demo()
    return _score(args, settings)


def _score(args: argparse.Namespace, settings: Settings) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from tweetmood.model_store import load_classifier
    from tweetmood.storage import ObjectGone
    from tweetmood_cli import jobs

    overrides: dict = {"model_dir": args.model or default_model_dir(settings), "ort_threads": args.threads}
    if args.model:
        overrides["model_uri"] = None
    if args.format:
        overrides["output_format"] = args.format
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    settings = dataclasses.replace(settings, **overrides)
    workers = args.workers or machine_cores()
    try:
        load_classifier(settings)  # fail before any work when the model is missing
    except ModelError as exc:
        print(f"tweetmood: {exc}\n  (no trained model yet? try --model tests/fixtures/tiny-model)", file=sys.stderr)
        return 2
    try:
        if args.input.startswith("s3://"):
            results = jobs.score_s3(args.input, settings, workers=workers, endpoint_url=args.endpoint_url,
                                    force=args.force, output=args.output, progress=not args.quiet)
        else:
            results = jobs.score_local(args.input, settings, workers=workers, output=args.output,
                                       progress=not args.quiet)
    except (ValueError, OSError, ObjectGone, BotoCoreError, ClientError) as exc:
        print(f"tweetmood: {exc}", file=sys.stderr)
        return 2
    jobs.print_results(results)
    return 0 if all(r.manifest.complete for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
