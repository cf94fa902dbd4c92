"""The model in layers/model/model: it loads, it is what model.json says, and its scores ignore the batch."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tweetmood.classifier import Classifier, sha256_file
from tweetmood.service import score_stream
from tweetmood.settings import Settings

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[3] / "layers" / "model" / "model"
RAW_TWEETS = [
    "I can't believe @united lost my bag AGAIN!!! #furious https://t.co/abc",
    "so happy rn 😀😀 best day ever",
    "feeling kinda lonely tonight...",
    "omg did NOT see that coming 😮",
    "I'm scared about tomorrow's results",
    "love you all so much ❤️ thank you for the birthday wishes",
    "ugh",
    "Sooooo tired of this",
] * 8


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    return Classifier.from_dir(SHIPPED, threads=2)


def test_the_shipped_model_matches_its_metadata(shipped):
    meta = json.loads((SHIPPED / "model.json").read_text())
    assert sha256_file(SHIPPED / meta["model_file"]) == meta["sha256"]
    assert shipped.labels == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert (SHIPPED / "model.onnx").stat().st_size < 25_000_000


def test_the_shipped_model_reads_emotions_in_plain_tweets(shipped):
    probs = shipped.predict_proba(["i feel so happy and excited today", "i am so scared and nervous"])
    assert [shipped.labels[i] for i in probs.argmax(axis=1)] == ["joy", "fear"]


def test_scores_are_identical_in_order_shuffled_and_one_by_one(shipped):
    texts = RAW_TWEETS
    in_order = np.concatenate([shipped.predict_proba(texts[i:i + 64]) for i in range(0, len(texts), 64)])
    order = list(range(len(texts)))
    random.Random(3).shuffle(order)
    shuffled = np.zeros_like(in_order)
    for start in range(0, len(order), 7):
        idx = order[start:start + 7]
        shuffled[idx] = shipped.predict_proba([texts[i] for i in idx])
    one_by_one = np.concatenate([shipped.predict_proba([t]) for t in texts])
    for other in (shuffled, one_by_one):
        assert (other.argmax(axis=1) == in_order.argmax(axis=1)).all()
        assert np.abs(other - in_order).max() <= 1e-4


def test_a_scored_file_does_not_depend_on_its_row_order(shipped):
    def scores(lines: list[str]) -> dict[str, dict]:
        sink = io.BytesIO()
        score_stream(io.BytesIO("\n".join(lines).encode()), "t.txt", shipped, Settings(batch_size=5), sink)
        rows = [json.loads(r) for r in sink.getvalue().splitlines()]
        return {r["text"]: r["scores"] for r in rows}

    lines = list(dict.fromkeys(RAW_TWEETS))
    forward, backward = scores(lines), scores(lines[::-1])
    for text in lines:
        assert max(abs(forward[text][k] - backward[text][k]) for k in forward[text]) <= 1e-4
