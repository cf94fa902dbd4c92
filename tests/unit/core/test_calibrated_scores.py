"""Serving applies model.json's calibration before the softmax; directories without one score exactly as before."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tweetmood.calibration import Calibration, softmax
from tweetmood.classifier import Classifier, ModelError
from tweetmood.model_store import clear_cache, download_model, load_classifier
from tweetmood.service import score_stream
from tweetmood.settings import Settings

pytestmark = pytest.mark.unit

TWEETS = ["I'm so happy!! 😀 #blessed", "why does this always happen to me", "@bob https://t.co/x", "scared. so scared"]


def calibrated_copy(tiny_model_dir: Path, tmp_path: Path, calibration) -> Path:
    """The tiny model directory copied, with `calibration` written into its model.json."""
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    meta["calibration"] = calibration
    (model_dir / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return model_dir


def test_a_model_without_calibration_scores_exactly_as_a_plain_softmax(tiny_classifier):
    logits = tiny_classifier.outputs(TWEETS)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert tiny_classifier.calibration == Calibration()
    assert np.array_equal(tiny_classifier.predict_proba(TWEETS), shifted / shifted.sum(axis=1, keepdims=True))


def test_a_temperature_divides_the_logits_keeps_the_label_and_sums_to_one(tiny_model_dir, tmp_path, tiny_classifier):
    calibrated = Classifier.from_dir(calibrated_copy(tiny_model_dir, tmp_path, {"method": "temperature",
                                                                                "temperature": 2.5}), threads=1)
    probs, plain = calibrated.predict_proba(TWEETS), tiny_classifier.predict_proba(TWEETS)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(probs, softmax(tiny_classifier.outputs(TWEETS) / 2.5), atol=1e-6)
    assert (probs.argmax(axis=1) == plain.argmax(axis=1)).all()
    assert (probs.max(axis=1) < plain.max(axis=1)).all()  # a temperature above 1 only ever lowers the top score


def test_vector_scaling_applies_one_weight_and_one_bias_per_label(tiny_model_dir, tmp_path, tiny_classifier):
    weights, biases = [0.5, 1.0, 2.0, 1.0, 0.8, 1.2], [0.0, 0.3, -0.2, 0.0, 0.1, -0.4]
    calibrated = Classifier.from_dir(calibrated_copy(tiny_model_dir, tmp_path, {
        "method": "vector", "weights": weights, "biases": biases}), threads=1)
    expected = softmax(tiny_classifier.outputs(TWEETS) * np.float32(weights) + np.float32(biases))
    np.testing.assert_allclose(calibrated.predict_proba(TWEETS), expected, atol=1e-6)


def test_a_model_that_outputs_probabilities_is_calibrated_on_their_logarithms():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], dtype=np.float32)
    calibration = Calibration.from_meta({"method": "temperature", "temperature": 3.0}, n_labels=3)
    np.testing.assert_allclose(calibration.probabilities(softmax(logits), "probabilities"), softmax(logits / 3),
                               atol=1e-6)


def test_without_calibration_a_probability_model_passes_its_scores_through_untouched():
    probs = softmax(np.array([[2.0, 0.5, -1.0]], dtype=np.float32))
    assert Calibration().probabilities(probs, "probabilities") is probs


def test_every_output_row_carries_calibrated_score_and_scores(tiny_model_dir, tmp_path, tiny_classifier):
    calibrated = Classifier.from_dir(calibrated_copy(tiny_model_dir, tmp_path, {"method": "temperature",
                                                                                "temperature": 4.0}), threads=1)
    sink = io.BytesIO()
    score_stream(io.BytesIO("\n".join(TWEETS).encode()), "t.txt", calibrated, Settings(batch_size=3), sink)
    rows = [json.loads(line) for line in sink.getvalue().splitlines()]
    expected = softmax(tiny_classifier.outputs(TWEETS) / 4.0)
    for row, probs in zip(rows, expected, strict=True):
        assert row["label"] == calibrated.labels[int(probs.argmax())]
        assert row["score"] == pytest.approx(float(probs.max()), abs=2e-6)
        assert list(row["scores"].values()) == pytest.approx(probs.tolist(), abs=2e-6)


def test_the_sha256_check_and_the_model_store_accept_a_calibrated_directory(tiny_model_dir, tmp_path, s3):
    model_dir = calibrated_copy(tiny_model_dir, tmp_path, {"method": "temperature", "temperature": 1.7,
                                                           "fitted_on": "test", "n": 10})
    clear_cache()
    try:
        assert load_classifier(Settings(model_dir=str(model_dir), ort_threads=1)).calibration.method == "temperature"
    finally:
        clear_cache()
    for path in model_dir.iterdir():
        s3.upload_file(str(path), "tweetmood-test", f"models/v1/{path.name}")
    downloaded = download_model("s3://tweetmood-test/models/v1/", s3, root=tmp_path / "downloads")
    assert Classifier.from_dir(downloaded, threads=1, verify=True).calibration.weights == pytest.approx(1 / 1.7)


@pytest.mark.parametrize(("calibration", "field"), [
    ({"method": "temperature", "temperature": 0}, "calibration.temperature"),
    ({"method": "temperature", "temperature": -1.5}, "calibration.temperature"),
    ({"method": "temperature", "temperature": "2"}, "calibration.temperature"),
    ({"method": "temperature"}, "calibration.temperature"),
    ({"method": "platt", "temperature": 2}, "calibration.method"),
    ({"method": "vector", "weights": [1, 1], "biases": [0, 0]}, "calibration.weights"),
    ({"method": "vector", "weights": [1] * 6, "biases": [0, 0, 0, 0, 0, None]}, "calibration.biases"),
    ("temperature", "calibration must be an object"),
])
def test_a_bad_calibration_field_fails_at_load_naming_model_json_and_the_field(tiny_model_dir, tmp_path,
                                                                               calibration, field):
    model_dir = calibrated_copy(tiny_model_dir, tmp_path, calibration)
    with pytest.raises(ModelError, match=r"model\.json: " + field.replace(".", r"\.")) as caught:
        Classifier.from_dir(model_dir, threads=1)
    assert "python -m training.calibrate" in str(caught.value)
