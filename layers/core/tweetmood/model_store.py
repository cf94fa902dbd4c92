"""Find the model: a directory (the layer at /opt/model) or an s3:// URI downloaded once into /tmp."""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tweetmood.classifier import Classifier, ModelError, sha256_file
from tweetmood.settings import Settings

DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "tweetmood-model"
_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def load_classifier(settings: Settings) -> Classifier:
    """The classifier for `settings`, built once per process (a warm Lambda reuses it)."""
    return _load(settings.model_dir, settings.model_uri, settings.ort_threads)


def clear_cache() -> None:
    """Forget loaded classifiers (tests, or after replacing the model directory)."""
    _load.cache_clear()


@functools.cache
def _load(model_dir: str, model_uri: str | None, threads: int | None) -> Classifier:
    if model_uri:
        import boto3

        model_dir = str(download_model(model_uri, boto3.client("s3")))
    return Classifier.from_dir(model_dir, threads=threads)


def _split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ModelError(f"MODEL_URI={uri!r} must look like s3://bucket/prefix/")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ModelError(f"MODEL_URI={uri!r} names no bucket")
    return bucket, prefix.rstrip("/") + "/" if prefix else ""


def download_model(uri: str, s3: Any, root: Path = DOWNLOAD_ROOT) -> Path:
    """Copy the model directory at `uri` to `root/<version>/` (once) and return that path.

    Only the files `model.json` names are fetched; the model file must match its sha256
    before the directory is moved into place, so a half-finished download is never used.
    """
    bucket, prefix = _split_uri(uri)
    try:
        meta = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "model.json")["Body"].read())
    except s3.exceptions.NoSuchKey:
        raise ModelError(f"{uri}model.json not found: MODEL_URI must point at a model directory") from None
    version = str(meta.get("version", ""))
    if not version:
        raise ModelError(f"{uri}model.json has no version; re-export the model")
    target = root / re.sub(r"[^A-Za-z0-9._-]", "_", version)
    if (target / "model.json").is_file():
        return target
    encoder = meta.get("encoder") or {}
    names = {"model.json", meta.get("model_file", "model.onnx")}
    names |= {encoder[k] for k in ("tokenizer_file", "vocab_file") if encoder.get(k)}
    bad = sorted(n for n in names if not _SIMPLE_NAME.match(n) or n.startswith("."))
    if bad:
        raise ModelError(f"{uri}model.json names files outside the model directory: {bad}")
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        for name in sorted(names):
            s3.download_file(bucket, prefix + name, str(partial / name))
        model_file = partial / meta.get("model_file", "model.onnx")
        if sha256_file(model_file) != meta.get("sha256"):
            raise ModelError(f"{uri}{model_file.name} does not match the sha256 in model.json; re-upload the model")
        try:
            partial.rename(target)
        except OSError:
            if not (target / "model.json").is_file():  # another process won the race: use its copy
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
