"""The tiny test model builds, loads and matches its committed copy; the model store loads it once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tweetmood.classifier import Classifier, ModelError
from tweetmood.model_store import clear_cache, load_classifier
from tweetmood.settings import Settings

pytestmark = pytest.mark.unit
TINY_MODEL_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "tiny-model"


def test_the_tiny_model_scores_every_label_and_sums_to_one(tiny_classifier):
    assert tiny_classifier.labels == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    probs = tiny_classifier.predict_proba(["I'm so happy!! 😀 #blessed", "", "@bob https://t.co/x"])
    assert probs.shape == (3, 6) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_the_committed_tiny_model_matches_a_fresh_build(tiny_model_dir):
    for name in ("model.onnx", "tokenizer.json", "model.json"):
        assert (TINY_MODEL_FIXTURE / name).read_bytes() == (tiny_model_dir / name).read_bytes(), (
            f"{name} is stale: run .venv/bin/python tests/fixtures/make_tiny_model.py"
        )


def test_custom_labels_come_from_the_model_directory(tmp_path):
    from tweetmood_cli.testing import build_tiny_model

    clf = Classifier.from_dir(build_tiny_model(tmp_path, labels=["calm", "storm"]), threads=1)
    assert clf.labels == ["calm", "storm"] and clf.predict_proba(["x"]).shape == (1, 2)


def test_load_classifier_builds_once_per_process(tiny_model_dir):
    clear_cache()
    settings = Settings(model_dir=str(tiny_model_dir), ort_threads=1)
    assert load_classifier(settings) is load_classifier(settings)
    clear_cache()


def test_a_missing_model_directory_says_what_to_do(tmp_path):
    clear_cache()
    with pytest.raises(ModelError, match="MODEL_DIR"):
        load_classifier(Settings(model_dir=str(tmp_path / "nowhere")))
