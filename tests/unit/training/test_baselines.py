"""The Keras baselines export to ONNX model directories that the serving core scores exactly like Keras."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from training.baselines import train_bilstm, train_dnn  # noqa: E402
from training.data import Example, Splits  # noqa: E402
from tweetmood.classifier import Classifier, sha256_file  # noqa: E402
from tweetmood.encoders import SequenceEncoder, TfidfEncoder  # noqa: E402
from tweetmood.normalize import normalize_tweet  # noqa: E402

pytestmark = pytest.mark.unit

WORDS = {
    "joy": ["happy", "glad", "delighted", "cheerful", "thrilled"],
    "sadness": ["sad", "miserable", "lonely", "gloomy", "heartbroken"],
    "anger": ["angry", "furious", "annoyed", "irritated", "mad"],
    "positive": ["great", "lovely", "wonderful", "happy", "fantastic"],
    "negative": ["awful", "terrible", "horrible", "sad", "dreadful"],
}
FRAMES = ["i feel {} today", "im so {} about the news", "feeling {} again", "this makes me {}", "honestly {} right now"]
# Raw tweets as uploads bring them: case, punctuation, URLs, mentions, hashtags, emoji, unseen words.
RAW_TEXTS = [
    "I'm SO happy!!! https://t.co/xyz",
    "@friend feeling sooooo lonely tonight #sad",
    "Furious. Absolutely furious 😡",
    "completely unseen words here",
    "",
    "wonderful, great, lovely day :)",
]


def _examples(labels: list[str], per_label: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    rows = []
    for label in labels:
        for _ in range(per_label):
            rows.append(Example(text=rng.choice(FRAMES).format(rng.choice(WORDS[label])), label=label, line=len(rows) + 1))
    rng.shuffle(rows)
    return rows


def _splits(labels: list[str]) -> Splits:
    return Splits(train=_examples(labels, 12, 1), val=_examples(labels, 3, 2), test=_examples(labels, 4, 3),
                  labels=sorted(labels))


DATASETS = {"three_emotions": ["joy", "sadness", "anger"], "binary": ["positive", "negative"]}


@pytest.fixture(scope="module", params=sorted(DATASETS))
def trained(request, tmp_path_factory):
    """Both baselines, tiny and trained for one epoch, on one synthetic data set; built once per module."""
    splits = _splits(DATASETS[request.param])
    root = tmp_path_factory.mktemp(request.param)
    dnn = train_dnn(splits, root / "dnn", seed=0, epochs=1, max_features=None, hidden=(16, 8), batch_size=8, threads=1)
    bilstm = train_bilstm(splits, root / "bilstm", seed=0, epochs=1, max_length=12, embedding_dim=8, lstm_units=4,
                          dense_units=8, batch_size=8, threads=1)
    return splits, {"dnn": dnn, "bilstm": bilstm}


def _keras_proba(result, texts: list[str]) -> np.ndarray:
    vocab = result.out_dir / "vocab.json"
    encoder = TfidfEncoder(vocab) if result.name.endswith("dnn") else SequenceEncoder(vocab)
    return result.model.predict(encoder.transform([normalize_tweet(t) for t in texts]), verbose=0)


@pytest.mark.parametrize("which", ["dnn", "bilstm"])
def test_exported_onnx_matches_keras_on_the_test_split(trained, which):
    result = trained[1][which]
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics["parity"]["onnx_vs_keras_max_abs_diff"] <= 1e-5
    assert metrics["parity"]["classifier_vs_keras_max_abs_diff"] <= 1e-5
    assert result.parity_max_abs_diff <= 1e-5


@pytest.mark.parametrize("which", ["dnn", "bilstm"])
def test_served_classifier_scores_raw_tweets_like_keras_scores_normalized_ones(trained, which):
    splits, results = trained
    result = results[which]
    served = Classifier.from_dir(result.out_dir, threads=1).predict_proba(RAW_TEXTS)
    assert served.shape == (len(RAW_TEXTS), len(splits.labels))
    np.testing.assert_allclose(served, _keras_proba(result, RAW_TEXTS), rtol=0, atol=1e-5)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)


def test_tfidf_encoder_reproduces_sklearn_features(trained):
    from sklearn.feature_extraction.text import TfidfVectorizer

    splits, results = trained
    train = [normalize_tweet(e.text) for e in splits.train]
    texts = [normalize_tweet(t) for t in RAW_TEXTS] + [normalize_tweet(e.text) for e in splits.test]
    vocab = json.loads((results["dnn"].out_dir / "vocab.json").read_text())
    sklearn = TfidfVectorizer(token_pattern=vocab["token_pattern"], norm="l2").fit(train)
    assert vocab["vocabulary"] == {k: int(v) for k, v in sklearn.vocabulary_.items()}
    ours = TfidfEncoder(results["dnn"].out_dir / "vocab.json").transform(texts)
    np.testing.assert_allclose(ours, sklearn.transform(texts).toarray(), rtol=0, atol=1e-6)


def test_sequence_vocab_reserves_pad_and_out_of_vocabulary_ids(trained):
    vocab = json.loads((trained[1]["bilstm"].out_dir / "vocab.json").read_text())
    assert (vocab["pad_id"], vocab["oov_id"], vocab["max_length"]) == (0, 1, 12)
    assert sorted(vocab["word_index"].values()) == list(range(2, len(vocab["word_index"]) + 2))


@pytest.mark.parametrize("which, encoder_type", [("dnn", "tfidf"), ("bilstm", "sequence")])
def test_model_json_carries_the_serving_contract(trained, which, encoder_type):
    splits, results = trained
    out_dir = results[which].out_dir
    meta = json.loads((out_dir / "model.json").read_text())
    for key in ("name", "version", "labels", "max_length", "model_file", "sha256", "normalization", "encoder",
                "output", "created"):
        assert key in meta, key
    assert meta["labels"] == splits.labels
    assert meta["sha256"] == sha256_file(out_dir / meta["model_file"])
    assert meta["version"] == f"{meta['name']}-{meta['sha256'][:8]}"
    assert meta["normalization"] == "tweet-v2"
    assert meta["encoder"] == {"type": encoder_type, "vocab_file": "vocab.json"}
    assert meta["output"] == {"name": "probabilities", "kind": "probabilities"}


def test_metrics_json_reports_the_test_split_through_the_served_model(trained):
    splits, results = trained
    metrics = json.loads((results["dnn"].out_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == len(splits.test) and metrics["val"]["n"] == len(splits.val)
    assert metrics["test"]["labels"] == splits.labels
    assert metrics["model_bytes"] == (results["dnn"].out_dir / "model.onnx").stat().st_size
    assert metrics["params"] > 0 and metrics["train_time_s"] >= 0
