"""Upload a serving directory to S3 under its content-addressed version; the printed URI is what MODEL_URI takes."""

from __future__ import annotations

import json
from pathlib import Path

from tweetmood.classifier import read_model_meta, sha256_file

# The files of the model-directory contract that are uploaded (docs/architecture.md); anything else stays local.
PUBLISHED_FILES = ("model.onnx", "model.json", "tokenizer.json", "vocab.json", "README.md", "metrics.json",
                   "confusion_matrix.png")


class PublishError(RuntimeError):
    """The directory or the destination cannot be published as asked."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix/` -> ("bucket", "prefix") without slashes at either end."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise PublishError(f"{uri!r} is not an S3 URI; write it as s3://bucket/prefix/")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise PublishError(f"{uri!r} names no bucket; write it as s3://bucket/prefix/")
    return bucket, prefix.strip("/")


def _remote_sha256(s3_client, bucket: str, key: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    try:
        return json.loads(body).get("sha256")
    except (ValueError, AttributeError):
        return None


def publish(serving_dir: str | Path, destination: str, s3_client) -> str:
    """Upload `serving_dir` to `<destination>/<model.json version>/` and return that URI. The version holds the
    first 8 hex of the model's sha256, so a version already there with the same sha256 is not uploaded again;
    one there with a different sha256 is refused rather than overwritten."""
    serving_dir = Path(serving_dir)
    meta = read_model_meta(serving_dir)
    model_path = serving_dir / meta.get("model_file", "model.onnx")
    if sha256_file(model_path) != meta["sha256"]:
        raise PublishError(f"{model_path} does not match the sha256 in model.json; re-export before publishing")
    bucket, prefix = parse_s3_uri(destination)
    base = f"{prefix}/{meta['version']}" if prefix else str(meta["version"])
    uri = f"s3://{bucket}/{base}/"
    remote = _remote_sha256(s3_client, bucket, f"{base}/model.json")
    if remote == meta["sha256"]:
        return uri
    if remote is not None:
        raise PublishError(f"{uri} already holds a model with sha256 {remote}, not {meta['sha256']}; "
                           "versions are immutable: change the model name or publish under another prefix")
    files = [serving_dir / name for name in PUBLISHED_FILES if (serving_dir / name).is_file()]
    # model.json last: a version counts as published once its model.json (which names the sha256) is there.
    files.sort(key=lambda p: p.name == "model.json")
    for path in files:
        extra = {"ContentType": "application/json"} if path.suffix == ".json" else {}
        with open(path, "rb") as fh:
            s3_client.put_object(Bucket=bucket, Key=f"{base}/{path.name}", Body=fh, **extra)
    return uri
