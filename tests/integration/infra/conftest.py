"""Fixtures for the handler tests: the functions' environment from template.yaml, over moto's S3."""

from __future__ import annotations

import pytest
from samtranslator.yaml_helper import yaml_parse

from lambda_harness import EVENT_BUCKET, REPO
from tweetmood import model_store


@pytest.fixture
def lambda_env(monkeypatch, tiny_model_dir, s3):
    """The environment template.yaml gives the functions, with the tiny model and the events' bucket."""
    globals_env = yaml_parse((REPO / "template.yaml").read_text())["Globals"]["Function"]["Environment"]["Variables"]
    env = {
        "INPUT_PREFIX": "incoming/",
        "OUTPUT_PREFIX": "scored/",
        "MODEL_DIR": str(tiny_model_dir),
        "MODEL_URI": "",
        "BUCKET_NAME": EVENT_BUCKET,
        "POWERTOOLS_SERVICE_NAME": "tweetmood",
        "POWERTOOLS_METRICS_NAMESPACE": "tweetmood",
        "LOG_LEVEL": "INFO",
    }
    assert set(env) == set(globals_env), "the handler tests must set exactly what the template sets"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3.create_bucket(Bucket=EVENT_BUCKET)
    model_store.clear_cache()
    yield s3
    model_store.clear_cache()
