"""Plan, score chunks, merge on local files: the chunked result is the serial result, byte for byte."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from tweetmood import keys, scaleout
from tweetmood.manifest import OutputManifest
from tweetmood.scoring import local_manifest_path, score_file
from tweetmood.settings import Settings
from tweetmood.storage import LocalStorage

pytestmark = pytest.mark.unit
# Small windows and chunks, so a few hundred rows make many chunks.
SMALL = dict(batch_size=2, chunk_rows=30, chunk_bytes=1 << 20)
TIMING = ("started", "finished", "duration_s", "tweets_per_s", "model_s")


def tweets(n: int) -> list[str]:
    moods = ["so happy today 😀", "this makes me furious", "i am scared of the dark", "what a lovely surprise",
             "feeling down and alone", "i adore you"]
    return [f"{moods[i % len(moods)]} number {i}{' really' * (i % 7)}" for i in range(n)]


def chunked(path: Path, out: Path, classifier, settings: Settings) -> tuple[dict, list[dict]]:
    """Plan, score every chunk in order, merge: what the state machine does, in one process."""
    storage = LocalStorage()
    run = scaleout.plan(storage, settings, scaleout.local_run(str(path), str(out), str(out.parent / "staging")))
    items = scaleout.read_plan(storage, run)
    for item in items:
        scaleout.score_chunk(storage, classifier, settings, item)
    return scaleout.merge_run(storage, settings, run, invocations=1), items


def manifest_without_timing(path: Path) -> dict:
    data = orjson.loads(path.read_bytes())
    return {k: v for k, v in data.items() if k not in TIMING}


def assert_chunked_equals_serial(tmp_path: Path, name: str, data: bytes, classifier, min_chunks: int = 8, **kw):
    settings = Settings(**{**SMALL, **kw})
    src = tmp_path / name
    src.write_bytes(data)
    serial_out, chunk_out = tmp_path / "serial" / "out", tmp_path / "chunked" / "out"
    serial = score_file(src, serial_out, classifier=classifier, settings=settings)
    summary, items = chunked(src, chunk_out, classifier, settings)
    assert len(items) >= min_chunks
    assert summary["status"] == serial.status
    assert (summary["rows_read"], summary["rows_scored"], summary["rows_rejected"]) == (
        serial.rows_read, serial.rows_scored, serial.rows_rejected)
    assert manifest_without_timing(local_manifest_path(chunk_out)) == manifest_without_timing(
        local_manifest_path(serial_out)) | {"output_key": str(chunk_out)}
    if serial.complete:
        assert chunk_out.read_bytes() == serial_out.read_bytes()
    else:
        assert not chunk_out.exists()
    assert not (tmp_path / "chunked" / "staging").exists()
    return serial, items


def test_a_chunked_text_file_equals_the_serial_run_byte_for_byte(tmp_path, tiny_classifier):
    data = "\n".join(tweets(500)).encode()
    assert_chunked_equals_serial(tmp_path, "t.txt", data, tiny_classifier)


def test_a_chunked_gzip_file_equals_the_serial_run_byte_for_byte(tmp_path, tiny_classifier):
    data = gzip.compress(("\r\n".join(tweets(500)) + "\r\n").encode())
    _, items = assert_chunked_equals_serial(tmp_path, "t.txt.gz", data, tiny_classifier)
    assert all(item["decompressed"] and item["source_key"].endswith("source/t.txt") for item in items)


def test_a_chunked_jsonl_file_keeps_ids_and_line_numbers(tmp_path, tiny_classifier):
    lines = [json.dumps({"id": 1000 + i, "text": t}) for i, t in enumerate(tweets(400))]
    lines[17] = "{not json"
    lines[203] = json.dumps({"text": 5})
    assert_chunked_equals_serial(tmp_path, "t.jsonl", "\n".join(lines).encode(), tiny_classifier)


def test_chunks_never_cut_a_csv_record_with_quoted_line_breaks(tmp_path, tiny_classifier):
    rows = ["id,text"] + [f'{i},"{t}\nsecond line, with a comma\n\nand a blank one"' if i % 3 == 0 else f"{i},{t}"
                          for i, t in enumerate(tweets(400))]
    data = "\n".join(rows).encode()
    serial, items = assert_chunked_equals_serial(tmp_path, "t.csv", data, tiny_classifier, output_format="csv")
    for item in items:
        assert data[item["start"]:item["start"] + 1] != b"\n" or item["start"] == 0
    assert all(item["header"] == ["id", "text"] for item in items[1:])
    assert (tmp_path / "chunked" / "out").read_text().count("line,id,text,label") == 1


def test_later_chunks_of_a_semicolon_separated_csv_keep_its_separator(tmp_path, tiny_classifier):
    data = "\n".join(["id;text"] + [f'{i};"{t}; with a semicolon"' for i, t in enumerate(tweets(300))]).encode()
    serial, items = assert_chunked_equals_serial(tmp_path, "t.csv", data, tiny_classifier)
    assert serial.rows_scored == 300
    assert all(item["delimiter"] == ";" and item["header"] == ["id", "text"] for item in items[1:])


def test_a_file_with_bad_rows_is_chunked_like_the_serial_run(tmp_path, tiny_classifier):
    lines = [t.encode() for t in tweets(500)]
    lines[5] = b"bad \xff bytes"
    lines[50] = b""
    lines[120] = b"x" * 300
    lines[121] = b"nul\x00byte"
    data = b"\xef\xbb\xbf" + b"\r".join(lines)
    serial, _ = assert_chunked_equals_serial(tmp_path, "t.txt", data, tiny_classifier, max_line_bytes=200)
    assert serial.rows_rejected == 4


def test_a_damaged_gzip_fails_with_the_serial_runs_counts_and_reason(tmp_path, tiny_classifier):
    data = gzip.compress("\n".join(tweets(3000)).encode())
    serial, items = assert_chunked_equals_serial(tmp_path, "t.txt.gz", data[: len(data) // 2], tiny_classifier)
    assert serial.status == "failed" and "truncated" in serial.reason and serial.rows_read > 0
    assert items[-1]["file_error"]["code"] == "truncated_gzip"


def test_an_unclosed_csv_quote_fails_like_the_serial_run(tmp_path, tiny_classifier):
    rows = ["text"] + tweets(300) + ['"never closed'] + ["more"] * 200000
    serial, _ = assert_chunked_equals_serial(tmp_path, "t.csv", "\n".join(rows).encode(), tiny_classifier)
    assert serial.status == "failed"


def test_a_gz_that_is_not_gzip_fails_like_the_serial_run_from_its_first_bytes(tmp_path, tiny_classifier):
    serial, items = assert_chunked_equals_serial(tmp_path, "t.txt.gz", b"plain text, not gzip\n", tiny_classifier,
                                                 min_chunks=1)
    assert serial.status == "failed" and "not gzip-compressed" in serial.reason
    assert [i["file_error"]["code"] for i in items] == ["not_gzip"]


def test_a_json_file_fails_like_the_serial_run_with_a_hint_to_write_json_lines(tmp_path, tiny_classifier):
    serial, items = assert_chunked_equals_serial(tmp_path, "t.json", b'[{"text": "hi"}]\n', tiny_classifier,
                                                 min_chunks=1)
    assert serial.status == "failed" and items[-1]["file_error"]["code"] == "unsupported_format"
    assert serial.reason.endswith("a .json file: write one object per line (JSON Lines) and name it .jsonl")


def _planned_300_tweets(tmp_path):
    """A 300-tweet text file planned into small chunks on local storage: (settings, source, storage, run, items)."""
    settings = Settings(**SMALL)
    src = tmp_path / "t.txt"
    src.write_text("\n".join(tweets(300)))
    storage = LocalStorage()
    run = scaleout.plan(storage, settings, scaleout.local_run(str(src), str(tmp_path / "out"), str(tmp_path / "st")))
    return settings, src, storage, run, scaleout.read_plan(storage, run)


def test_a_retried_chunk_overwrites_its_part(tmp_path, tiny_classifier):
    settings, src, storage, run, items = _planned_300_tweets(tmp_path)
    for item in items:
        scaleout.score_chunk(storage, tiny_classifier, settings, item)
    again = scaleout.score_chunk(storage, tiny_classifier, settings, items[2])
    assert again["rows"] == items[2]["rows"]
    assert len(list((tmp_path / "st" / "parts").iterdir())) == len(items)
    scaleout.merge_run(storage, settings, run)
    serial = score_file(src, tmp_path / "serial", classifier=tiny_classifier, settings=settings)
    assert (tmp_path / "out").read_bytes() == (tmp_path / "serial").read_bytes() and serial.rows_read == 300


def test_the_merge_refuses_a_run_with_a_missing_part(tmp_path, tiny_classifier):
    settings, _, storage, run, items = _planned_300_tweets(tmp_path)
    for item in items[:-1]:
        scaleout.score_chunk(storage, tiny_classifier, settings, item)
    with pytest.raises(scaleout.PartsMissing, match=f"chunk {items[-1]['index']}"):
        scaleout.merge_run(storage, settings, run)
    assert not (tmp_path / "out").exists()


def test_the_plan_is_a_json_array_of_self_contained_items(tmp_path):
    _, src, _, run, _ = _planned_300_tweets(tmp_path)
    items = orjson.loads(Path(run["plan_key"]).read_bytes())
    assert isinstance(items, list) and len(items) == run["chunks"]
    assert {"run_id", "bucket", "key", "source_key", "etag", "index", "start", "end", "first_line", "format",
            "header", "text_column"} <= set(items[0])
    assert [i["index"] for i in items] == list(range(len(items)))
    assert all(a["end"] == b["start"] for a, b in zip(items, items[1:])) and items[-1]["end"] == src.stat().st_size
    assert sum(i["rows"] for i in items) == 300


def test_execution_names_are_deterministic_short_and_safe():
    name = scaleout.execution_name("b", "incoming/a very long name é" + "x" * 200 + ".csv.gz", "etag", None)
    assert name == scaleout.execution_name("b", "incoming/a very long name é" + "x" * 200 + ".csv.gz", "etag", None)
    assert len(name) <= 80 and all(c.isalnum() or c in "-_" for c in name)
    assert name != scaleout.execution_name("b", "incoming/a very long name é" + "x" * 200 + ".csv.gz", "etag2", None)
    assert name != scaleout.execution_name("b", "incoming/a very long name é" + "x" * 200 + ".csv.gz", "etag", "v2")


def test_keys_keep_results_manifests_claims_and_staging_apart():
    s = Settings()
    assert keys.output_key_for("incoming/a/b.txt", s) == "scored/results/a/b.txt.jsonl"
    assert keys.manifest_key_for("incoming/a/b.txt", s) == "scored/manifests/a/b.txt.jsonl.manifest.json"
    assert keys.claim_key_for("incoming/a/b.txt", s) == "scored/claims/a/b.txt.jsonl.claim"
    assert keys.staging_prefix_for("run-1", s) == "scored/staging/run-1/"
    assert keys.legacy_manifest_key_for("incoming/a/b.txt", s) == "scored/a/b.txt.jsonl.manifest.json"
    assert OutputManifest().to_json().count(b"\n") == 1
