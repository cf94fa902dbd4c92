"""score_stream, score_file and the key rules: one code path, every row accounted for."""

from __future__ import annotations

import gzip
import io

import orjson
import pytest

from tweetmood.manifest import OutputManifest
from tweetmood.keys import is_scoreable_key, legacy_output_key_for, manifest_key_for, output_key_for
from tweetmood.scoring import score_file, score_stream
from tweetmood.settings import Settings

pytestmark = pytest.mark.unit
SETTINGS = Settings()


def score(data: bytes, name: str, classifier, **kw) -> tuple[OutputManifest, list[dict]]:
    sink = io.BytesIO()
    manifest = score_stream(io.BytesIO(data), name, classifier, Settings(**kw), sink)
    rows = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    assert manifest.rows_read == manifest.rows_scored + manifest.rows_rejected == len(rows)
    return manifest, rows


def test_scoring_writes_one_row_per_input_row_in_order(tiny_classifier):
    data = b"I love this \xf0\x9f\x98\x8d\n\nso angry right now!!\n\xff\nwhat a surprise\n" * 30
    manifest, rows = score(data, "incoming/t.txt", tiny_classifier, batch_size=7)
    assert [r["line"] for r in rows] == list(range(1, 151))
    assert manifest.status == "complete" and manifest.reason is None
    assert (manifest.rows_scored, manifest.rows_rejected) == (90, 60)
    assert manifest.error_counts == {"empty_text": 30, "invalid_utf8": 30}
    assert list(manifest.label_counts) == tiny_classifier.labels and sum(manifest.label_counts.values()) == 90
    assert {r["model"] for r in rows if "label" in r} == {tiny_classifier.version}
    assert manifest.model_sha256 == tiny_classifier.sha256 and manifest.tweets_per_s > 0


def test_batch_size_does_not_change_the_output_bytes(tiny_classifier):
    data = "\n".join(f"tweet {i} {'very ' * (i % 9)}happy 😀" for i in range(300)).encode()
    outputs = []
    for batch_size in (1, 13, 64):
        sink = io.BytesIO()
        score_stream(io.BytesIO(data), "t.txt", tiny_classifier, Settings(batch_size=batch_size), sink)
        outputs.append([orjson.loads(x) for x in sink.getvalue().splitlines()])
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other):
            assert a["line"] == b["line"] and a["label"] == b["label"]
            assert a["scores"] == pytest.approx(b["scores"], abs=2e-6)


def test_a_whole_file_failure_still_counts_the_rows_read(tiny_classifier):
    data = gzip.compress(b"".join(b"tweet %d\n" % i for i in range(30000)))
    manifest, rows = score(data[: len(data) // 2], "incoming/t.txt.gz", tiny_classifier)
    assert manifest.status == "failed" and "truncated" in manifest.reason and not manifest.retryable
    assert manifest.rows_read > 1000


def test_scoring_stops_cleanly_when_time_runs_out(tiny_classifier):
    sink = io.BytesIO()
    data = b"a tweet\n" * 2000
    manifest = score_stream(io.BytesIO(data), "t.txt", tiny_classifier, SETTINGS, sink, remaining_ms=lambda: 0)
    assert manifest.status == "failed" and manifest.retryable and "time out" in manifest.reason
    assert 0 < manifest.rows_read < 2000
    assert manifest.rows_read == manifest.rows_scored + manifest.rows_rejected == len(sink.getvalue().splitlines())


def test_a_missing_text_column_fails_the_file_with_its_reason(tiny_classifier):
    manifest, rows = score(b"author,date\nann,today\n", "in.csv", tiny_classifier)
    assert manifest.status == "failed" and "no text column" in manifest.reason and rows == []


@pytest.mark.parametrize(
    "key, expected",
    [
        ("incoming/a.txt", "a.txt.jsonl"),
        ("incoming/deep/dir/b.csv.gz", "deep/dir/b.csv.gz.jsonl"),
        ("incoming/Café reviews/c d.jsonl", "Café reviews/c d.jsonl.jsonl"),
    ],
)
def test_output_keys_mirror_the_input_path_below_the_output_prefix(key, expected):
    assert output_key_for(key, SETTINGS) == "scored/results/" + expected
    assert manifest_key_for(key, SETTINGS) == "scored/manifests/" + expected + ".manifest.json"
    assert legacy_output_key_for(key, SETTINGS) == "scored/" + expected
    assert output_key_for(key, Settings(output_format="csv")) == "scored/results/" + expected[: -len("jsonl")] + "csv"


def test_an_output_key_for_a_key_outside_the_input_prefix_is_refused():
    with pytest.raises(ValueError, match="INPUT_PREFIX"):
        output_key_for("elsewhere/a.txt", SETTINGS)


@pytest.mark.parametrize(
    "key, size, fragment",
    [
        ("incoming/folder/", 0, "folder marker"),
        ("scored/a.txt.jsonl", 10, "OUTPUT_PREFIX"),
        ("scored/a.txt.jsonl.manifest.json", 10, "OUTPUT_PREFIX"),
        ("elsewhere/a.txt", 10, "outside INPUT_PREFIX"),
        ("incoming/../scored/x.txt", 10, "'..'"),
        ("incoming/empty.txt", 0, "zero-byte"),
        ("incoming/sheet.xlsx", 10, "not .txt"),
    ],
)
def test_keys_that_must_not_be_scored_are_refused_with_a_reason(key, size, fragment):
    ok, reason = is_scoreable_key(key, size, SETTINGS)
    assert not ok and fragment in reason


@pytest.mark.parametrize("key", ["incoming/a.txt", "incoming/x/b.CSV.gz", "incoming/c.jsonl", "incoming/d e+f.ndjson"])
def test_supported_keys_below_the_input_prefix_are_scoreable(key):
    assert is_scoreable_key(key, 10, SETTINGS) == (True, "")


def test_the_output_prefix_wins_even_when_inside_a_whole_bucket_input():
    assert not is_scoreable_key("scored/x.txt", 5, Settings(input_prefix=""))[0]


def test_score_file_writes_the_output_then_its_manifest(tiny_classifier, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id": "a", "text": "happy day"}\n{"text": 1}\n')
    output = tmp_path / "out" / "in.jsonl.scored.jsonl"
    manifest = score_file(source, output, classifier=tiny_classifier, settings=SETTINGS)
    rows = [orjson.loads(x) for x in output.read_bytes().splitlines()]
    assert [r.get("id") for r in rows] == ["a", None] and rows[1]["error"] == "text_not_a_string"
    stored = OutputManifest.from_json((tmp_path / "out" / "in.jsonl.scored.jsonl.manifest.json").read_bytes())
    assert stored == manifest and stored.rows_read == 2 == stored.rows_scored + stored.rows_rejected
    assert [p.name for p in output.parent.iterdir() if p.name.startswith(".tweetmood-")] == []
    assert {oct(p.stat().st_mode & 0o777) for p in output.parent.iterdir()} == {"0o644"}  # not mkstemp's 0600


def test_a_failed_local_file_leaves_no_output_only_a_failed_manifest(tiny_classifier, tmp_path):
    source = tmp_path / "bad.txt.gz"
    source.write_bytes(b"not gzip at all\n")
    output = tmp_path / "bad.txt.gz.scored.jsonl"
    output.write_bytes(b"stale result of an earlier version\n")
    manifest = score_file(source, output, classifier=tiny_classifier, settings=SETTINGS)
    assert manifest.status == "failed" and "not gzip" in manifest.reason
    assert not output.exists()
    assert OutputManifest.from_json(output.with_name(output.name + ".manifest.json").read_bytes()).status == "failed"
