"""Shared fixtures. Scoring-core fixtures (tiny model, moto S3, events) come first; others may follow below."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EVENTS_DIR = REPO / "events"
TINY_MODEL_FIXTURE = REPO / "tests" / "fixtures" / "tiny-model"
TEST_BUCKET = "tweetmood-test"


# --- scoring core ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random WordPiece model directory, rebuilt by `tweetmood_cli.testing` (needs onnx;
    without it, the committed copy under tests/fixtures/tiny-model)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return TINY_MODEL_FIXTURE
    from tweetmood_cli.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_dir):
    """One onnxruntime session over the tiny model, shared by the whole run."""
    from tweetmood.classifier import Classifier

    return Classifier.from_dir(tiny_model_dir, threads=1)


@pytest.fixture
def aws_credentials(monkeypatch):
    """Dummy credentials and no endpoint overrides, so nothing can reach a real AWS account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(aws_credentials):
    """An in-process moto S3 client with the empty bucket `TEST_BUCKET`."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=TEST_BUCKET)
        yield client


@pytest.fixture(scope="session")
def moto_server():
    """moto's threaded S3 server on a free 127.0.0.1 port; yields its endpoint URL."""
    from tweetmood_cli.localstack import LocalS3

    with LocalS3() as local:
        yield local.endpoint_url


def read_event(name: str) -> dict:
    """events/<name>.json, the same files `sam local invoke -e` uses."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture
def load_event():
    """`load_event(name)` -> the parsed events/<name>.json."""
    return read_event
