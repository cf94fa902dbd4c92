"""`tweetmood score FILE|s3://bucket/key` and `tweetmood demo`: the same service path the Lambda functions use."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

from tweetmood.classifier import ModelError
from tweetmood.settings import Settings, SettingsError

# layers/core/tweetmood/cli.py -> layers/model/model: the shipped artifact in a checkout.
REPO_MODEL_DIR = Path(__file__).resolve().parents[2] / "model" / "model"


def default_model_dir(settings: Settings, env=os.environ) -> str:
    """MODEL_DIR when set explicitly, else the checkout's layers/model/model when it holds a model, else /opt/model."""
    if env.get("MODEL_DIR", "").strip():
        return settings.model_dir
    if (REPO_MODEL_DIR / "model.json").is_file():
        return str(REPO_MODEL_DIR)
    return settings.model_dir


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tweetmood", description="Score the emotions in files of tweets.")
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score a local file or an s3://bucket/key")
    score.add_argument("input", help="a .txt, .csv or .jsonl file (optionally .gz), local or s3://bucket/key")
    score.add_argument("--output", help="where the results go (default: <input>.scored.jsonl, or the output key in S3)")
    score.add_argument("--format", choices=("jsonl", "csv"), help="result format (default: OUTPUT_FORMAT or jsonl)")
    score.add_argument("--model", help="model directory (default: MODEL_DIR, else layers/model/model, else /opt/model)")
    score.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://127.0.0.1:5000 for a local stack")
    score.add_argument("--batch-size", type=_positive, help="tweets per model call (default: BATCH_SIZE or 64)")
    score.add_argument("--force", action="store_true", help="score an S3 object again even if its manifest is complete")
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
        from tweetmood.localstack import run_demo

        return run_demo()
    return _score(args, settings)


def _score(args: argparse.Namespace, settings: Settings) -> int:
    from tweetmood import service
    from tweetmood.model_store import load_classifier

    overrides = {"model_dir": args.model or default_model_dir(settings)}
    if args.model:
        overrides["model_uri"] = None
    if args.format:
        overrides["output_format"] = args.format
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    settings = dataclasses.replace(settings, **overrides)
    try:
        classifier = load_classifier(settings)
    except ModelError as exc:
        print(f"tweetmood: {exc}\n  (no trained model yet? try --model tests/fixtures/tiny-model)", file=sys.stderr)
        return 2
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if args.input.startswith("s3://"):
            manifest, where = _score_s3(args, settings, classifier)
        else:
            manifest, where = _score_local(args, settings, classifier)
    except (ValueError, OSError, service.ObjectGone, BotoCoreError, ClientError) as exc:
        print(f"tweetmood: {exc}", file=sys.stderr)
        return 2
    print(manifest.summary())
    print(f"  output:   {where}\n  manifest: {service.manifest_key_for(where)}")
    return 0 if manifest.complete else 1


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri} should look like s3://bucket/key")
    return bucket, key


def _score_s3(args: argparse.Namespace, settings: Settings, classifier):
    import boto3

    from tweetmood import service

    bucket, key = _split_s3(args.input)
    if key.startswith(settings.output_prefix):
        raise ValueError(f"{args.input} is under OUTPUT_PREFIX={settings.output_prefix!r}: it is a result, not an input")
    if args.output:
        out_bucket, output_key = _split_s3(args.output) if args.output.startswith("s3://") else ("", "")
        if out_bucket != bucket:
            raise ValueError(f"--output must be s3://{bucket}/{settings.output_prefix}… for an S3 input")
    elif key.startswith(settings.input_prefix):
        output_key = service.output_key_for(key, settings)
    else:
        output_key = f"{settings.output_prefix}{key}.{settings.output_format}"
    s3 = boto3.client("s3", endpoint_url=args.endpoint_url)
    manifest = service.score_s3_object(
        s3, bucket, key, settings=settings, classifier=classifier, output_key=output_key, force=args.force
    )
    return manifest, f"s3://{bucket}/{manifest.output_key}"


def _score_local(args: argparse.Namespace, settings: Settings, classifier):
    from tweetmood import service

    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    output = Path(args.output) if args.output else path.with_name(f"{path.name}.scored.{settings.output_format}")
    return service.score_file(path, output, classifier=classifier, settings=settings), str(output)


if __name__ == "__main__":
    sys.exit(main())
