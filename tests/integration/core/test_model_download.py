"""MODEL_URI: the model directory is fetched from S3 once, checked, and moved into place whole."""

from __future__ import annotations

import json
import shutil

import pytest

from tweetmood.classifier import Classifier, ModelError
from tweetmood.model_store import download_model

pytestmark = pytest.mark.integration


def _upload(s3, model_dir, bucket, prefix):
    for path in model_dir.iterdir():
        s3.put_object(Bucket=bucket, Key=prefix + path.name, Body=path.read_bytes())


def test_a_model_uri_is_downloaded_once_into_a_version_folder(s3, tiny_model_dir, tmp_path):
    _upload(s3, tiny_model_dir, "tweetmood-test", "models/v1/")
    target = download_model("s3://tweetmood-test/models/v1", s3, root=tmp_path)
    assert target == tmp_path / "tiny-random-test"
    assert Classifier.from_dir(target, threads=1).labels  # sha256 verified on open
    s3.delete_object(Bucket="tweetmood-test", Key="models/v1/model.onnx")
    assert download_model("s3://tweetmood-test/models/v1/", s3, root=tmp_path) == target  # reused, not fetched


def test_a_model_uri_whose_file_does_not_match_its_sha256_is_refused(s3, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    meta = json.loads((broken / "model.json").read_text())
    (broken / "model.json").write_text(json.dumps({**meta, "sha256": "0" * 64}))
    _upload(s3, broken, "tweetmood-test", "models/bad/")
    root = tmp_path / "cache"
    with pytest.raises(ModelError, match="sha256"):
        download_model("s3://tweetmood-test/models/bad/", s3, root=root)
    assert [p.name for p in root.iterdir()] == []  # no half-finished model left to be used later
