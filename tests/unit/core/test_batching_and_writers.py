"""Batching keeps input order and batch-independent scores; writers emit the documented row shapes."""

from __future__ import annotations

import csv
import io

import numpy as np
import orjson
import pytest

from tweetmood.batching import scored_in_order
from tweetmood.records import Record, Rejected
from tweetmood.writers import make_writer

pytestmark = pytest.mark.unit


def test_batches_are_length_sorted_inside_the_window_and_output_keeps_input_order():
    items = [Record(i + 1, "x" * ((i * 7) % 13 + 1)) for i in range(50)]
    items.insert(10, Rejected(99, "empty_text", "m"))
    batches = []

    def predict(texts):
        batches.append([len(t) for t in texts])
        return np.array([[len(t), 0.0] for t in texts], dtype=np.float32)

    out = list(scored_in_order(items, predict, batch_size=8, window_batches=2))
    assert [item for item, _ in out] == items
    assert all(p is None for item, p in out if isinstance(item, Rejected))
    assert all(p[0] == len(item.text) for item, p in out if isinstance(item, Record))
    assert all(b == sorted(b) for b in batches) and max(len(b) for b in batches) == 8
    assert sum(len(b) for b in batches) == 50
    assert len(batches) == 7  # windows of 16 rows: 15 records + the rejected one, 16, 16, 3 -> 2+2+2+1 batches


def test_a_file_of_rejected_rows_streams_through_a_bounded_window_instead_of_piling_up():
    consumed = 0

    def rows():
        nonlocal consumed
        for i in range(100_000):
            consumed += 1
            yield Rejected(i + 1, "empty_text", "m")
        yield Record(100_001, "finally a tweet")

    out = scored_in_order(rows(), lambda texts: np.zeros((len(texts), 2), dtype=np.float32), batch_size=8,
                          window_batches=2)
    first, _ = next(out)
    assert first.line == 1 and consumed <= 16
    assert sum(1 for _ in out) == 100_000


def test_batches_follow_the_lengths_the_caller_passes_not_the_characters():
    items = [Record(i + 1, t) for i, t in enumerate(["aaaaaaaa", "b", "cccc", "dd", "eeeeee", "f"])]
    words = {"aaaaaaaa": 1, "b": 5, "cccc": 2, "dd": 4, "eeeeee": 3, "f": 6}
    batches = []

    def predict(texts):
        batches.append(list(texts))
        return np.zeros((len(texts), 2), dtype=np.float32)

    out = list(scored_in_order(items, predict, batch_size=3, lengths=lambda texts: [words[t] for t in texts]))
    assert batches == [["aaaaaaaa", "cccc", "eeeeee"], ["dd", "b", "f"]]
    assert [item for item, _ in out] == items


def test_a_wordpiece_classifier_measures_a_tweet_in_the_tokens_a_batch_is_padded_to(tiny_classifier):
    texts = ["I'm SO happy today!!! 😀", "ok", "a much longer tweet about my terrible awful monday morning commute"]
    lengths = tiny_classifier.lengths(texts)
    padded = [tiny_classifier.encoder(tiny_classifier.prepare([t]))["input_ids"].shape[1] for t in texts]
    assert lengths == padded and lengths[1] < lengths[0] < lengths[2]


def test_one_classifier_measures_and_scores_from_several_threads_at_once(tiny_classifier):
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"tweet number {i} " + "so very long " * (i % 9) for i in range(64)]
    expected_lengths, expected = tiny_classifier.lengths(texts), tiny_classifier.predict_proba(texts)

    def work(i):
        return tiny_classifier.lengths(texts) if i % 2 else tiny_classifier.predict_proba(texts)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(200)))
    for i, got in enumerate(results):
        if i % 2:
            assert got == expected_lengths
        else:
            np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_tweets_scores_do_not_depend_on_its_batch(tiny_classifier):
    texts = ["short", "a much longer tweet about my terrible awful monday morning commute 😡", "ok", "I love it ❤"]
    alone = np.vstack([tiny_classifier.predict_proba([t]) for t in texts])
    together = np.vstack([p for _, p in scored_in_order([Record(i, t) for i, t in enumerate(texts, 1)],
                                                        tiny_classifier.predict_proba, batch_size=4)])
    np.testing.assert_allclose(alone, together, atol=1e-6)


def test_jsonl_rows_have_the_documented_shape(tiny_classifier):
    labels = tiny_classifier.labels
    sink = io.BytesIO()
    writer = make_writer("jsonl", sink, labels, "v1")
    probs = np.array([0.1, 0.6, 0.1, 0.1, 0.05, 0.05], dtype=np.float32)
    assert writer.write(Record(3, "héllo 😀", "123"), probs) == labels[1]
    assert writer.write(Record(4, "no id"), probs) == labels[1]
    assert writer.write(Rejected(5, "invalid_utf8", "line 5 …"), None) is None
    writer.close()
    first, second, third = (orjson.loads(line) for line in sink.getvalue().splitlines())
    assert list(first) == ["line", "id", "text", "label", "score", "scores", "model"]
    assert first["text"] == "héllo 😀" and first["label"] == labels[1] and first["score"] == pytest.approx(0.6)
    assert list(first["scores"]) == labels and first["model"] == "v1"
    assert "id" not in second
    assert third == {"line": 5, "error": "invalid_utf8", "message": "line 5 …"}


def test_csv_rows_carry_one_score_column_per_model_label():
    labels = ["calm", "storm"]  # whatever the model says, never a hard-coded list
    sink = io.BytesIO()
    writer = make_writer("csv", sink, labels, "v2")
    writer.write(Record(1, 'comma, "quote"\nnewline', "7"), np.array([0.25, 0.75], dtype=np.float32))
    writer.write(Rejected(2, "empty_text", "blank"), None)
    writer.close()
    assert not sink.closed
    rows = list(csv.DictReader(io.StringIO(sink.getvalue().decode("utf-8"), newline="")))
    assert list(rows[0]) == ["line", "id", "text", "label", "score", "score_calm", "score_storm", "model", "error", "message"]
    assert rows[0]["text"] == 'comma, "quote"\nnewline' and rows[0]["label"] == "storm" and rows[0]["id"] == "7"
    assert rows[1]["error"] == "empty_text" and rows[1]["label"] == ""
    assert len(rows) == 2
