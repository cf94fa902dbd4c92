"""Publishing a serving directory to S3 under its content-addressed version (moto)."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest
from moto import mock_aws

from training.export import DEFAULT_QUANTIZATION
from training.publish import PublishError, parse_s3_uri, publish
from tweetmood.classifier import Classifier
from tweetmood.model_store import download_model

pytestmark = pytest.mark.unit

BUCKET = "tweetmood-models"


@pytest.fixture
def s3_client(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def serving(tiny_serving, tmp_path):
    copy = tmp_path / "serving"
    shutil.copytree(tiny_serving(DEFAULT_QUANTIZATION), copy)
    return copy


def test_publish_uploads_under_the_version_and_returns_the_model_uri(serving, s3_client, tmp_path):
    version = json.loads((serving / "model.json").read_text())["version"]
    uri = publish(serving, f"s3://{BUCKET}/models/", s3_client)
    assert uri == f"s3://{BUCKET}/models/{version}/"
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"models/{version}/{name}" for name in ("model.onnx", "model.json", "tokenizer.json", "README.md")} <= keys
    downloaded = download_model(uri, s3_client, root=tmp_path / "download")  # what serving does with MODEL_URI
    assert Classifier.from_dir(downloaded).version == version


def test_publishing_the_same_model_again_uploads_nothing(serving, s3_client, monkeypatch):
    uri = publish(serving, f"s3://{BUCKET}/models", s3_client)
    monkeypatch.setattr(s3_client, "put_object", lambda **kw: pytest.fail(f"uploaded {kw['Key']} again"))
    assert publish(serving, f"s3://{BUCKET}/models", s3_client) == uri


def test_a_different_model_under_an_existing_version_is_refused(serving, s3_client):
    uri = publish(serving, f"s3://{BUCKET}/models", s3_client)
    bucket, prefix = parse_s3_uri(uri)
    meta = json.loads(s3_client.get_object(Bucket=bucket, Key=f"{prefix}/model.json")["Body"].read())
    s3_client.put_object(Bucket=bucket, Key=f"{prefix}/model.json", Body=json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(PublishError, match="versions are immutable"):
        publish(serving, f"s3://{BUCKET}/models", s3_client)


def test_a_model_edited_after_export_is_not_published(serving, s3_client):
    with open(serving / "model.onnx", "ab") as fh:
        fh.write(b"edited")
    with pytest.raises(PublishError, match="does not match the sha256"):
        publish(serving, f"s3://{BUCKET}/models", s3_client)


@pytest.mark.parametrize("uri", ["models/", "s3://", "https://bucket/x"])
def test_a_destination_that_is_not_an_s3_uri_is_refused(uri):
    with pytest.raises(PublishError, match="s3://bucket/prefix/"):
        parse_s3_uri(uri)
