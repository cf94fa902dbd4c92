"""The two Lambda handlers, invoked with the events/ files against moto's S3 and the tiny model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from lambda_harness import EVENT_BUCKET, FakeContext, emitted_metrics, event_keys, load_handler, manifest_key, put, read, result_key

pytestmark = pytest.mark.integration

CSV = b'id,text\n1,"so happy today, truly"\n2,\n3,"i miss my mom"\n'


def test_the_put_event_scores_its_url_encoded_key_and_writes_result_then_manifest(lambda_env, load_event, capsys):
    s3 = lambda_env
    event = load_event("s3_put")
    (key,) = event_keys(event)
    assert key == "incoming/café reviews/monday tweets.csv"
    etag = put(s3, key, CSV)

    summary = load_handler("score_object").handler(event, FakeContext())

    output = result_key(key)
    assert summary["scored"] == [
        {"key": key, "output_key": output, "rows_read": 3, "rows_scored": 2, "rows_rejected": 1}
    ]
    assert summary["failed"] == summary["remaining"] == []
    rows = [orjson.loads(line) for line in read(s3, output).splitlines()]
    assert [row.get("id") for row in rows] == ["1", None, "3"]
    assert rows[1]["error"] == "empty_text" and rows[0]["label"] in rows[0]["scores"]
    assert output == "scored/results/café reviews/monday tweets.csv.jsonl"
    manifest = json.loads(read(s3, manifest_key(key)))
    assert manifest["status"] == "complete" and manifest["source_etag"] == etag
    assert emitted_metrics(capsys.readouterr().out) == {
        "RowsScored": 2, "RowsRejected": 1, "FilesFailed": 0, "FilesInProgress": 0, "FilesScaledOut": 0
    }


def test_every_record_of_a_multi_record_event_is_scored(lambda_env, load_event):
    s3 = lambda_env
    event = load_event("s3_put_multi")
    bodies = {".txt": b"so happy\nso sad\n", ".gz": gzip.compress(b'{"text": "wow"}\n'), ".csv": CSV}
    for key in event_keys(event):
        put(s3, key, bodies[Path(key).suffix])

    summary = load_handler("score_object").handler(event, FakeContext())

    assert sorted(s["key"] for s in summary["scored"]) == sorted(event_keys(event))
    for key in event_keys(event):
        assert json.loads(read(s3, manifest_key(key)))["status"] == "complete"


def test_an_event_replayed_after_success_is_skipped_not_scored_twice(lambda_env, load_event):
    s3 = lambda_env
    event = load_event("s3_put")
    put(s3, event_keys(event)[0], CSV)
    handler = load_handler("score_object").handler
    handler(event, FakeContext())

    again = handler(event, FakeContext())

    assert again["scored"] == [] and len(again["skipped"]) == 1


def test_a_bad_file_gets_a_failed_manifest_and_is_not_retried_by_lambda(lambda_env, load_event):
    s3 = lambda_env
    event = load_event("s3_put")
    (key,) = event_keys(event)
    put(s3, key, gzip.compress(b"not really a csv")[:10])  # a truncated upload, named .csv

    summary = load_handler("score_object").handler(event, FakeContext())

    assert [f["key"] for f in summary["failed"]] == [key]
    manifest = json.loads(read(s3, manifest_key(key)))
    assert manifest["status"] == "failed" and manifest["reason"]


def test_records_left_for_lack_of_time_make_lambda_retry_the_event(lambda_env, load_event, capsys):
    s3 = lambda_env
    event = load_event("s3_put")
    put(s3, event_keys(event)[0], CSV)
    app = load_handler("score_object")

    with pytest.raises(app.FilesNotScored, match="monday tweets.csv"):
        app.handler(event, FakeContext(remaining_ms=1_000))

    assert "Contents" not in s3.list_objects_v2(Bucket=EVENT_BUCKET, Prefix="scored/")
    assert emitted_metrics(capsys.readouterr().out)["FilesFailed"] == 0  # metrics are flushed even on a raise


def test_the_scheduled_event_sweeps_every_pending_upload(lambda_env, load_event, capsys):
    s3 = lambda_env
    put(s3, "incoming/2026/11/monday.txt", b"so happy\nso sad\n")
    put(s3, "incoming/2026/11/tuesday.jsonl.gz", gzip.compress(b'{"text": "wow"}\n{"text": "ugh"}\n'))
    put(s3, "incoming/notes.md", b"not a tweet file")

    summary = load_handler("sweep_pending").handler(load_event("scheduled"), FakeContext(function_name="sweep"))

    assert sorted(s["key"] for s in summary["scored"]) == ["incoming/2026/11/monday.txt", "incoming/2026/11/tuesday.jsonl.gz"]
    assert summary["complete"] is True and summary["ignored"] == 1
    for key in ("incoming/2026/11/monday.txt", "incoming/2026/11/tuesday.jsonl.gz"):
        assert len(read(s3, result_key(key)).splitlines()) == 2
        assert json.loads(read(s3, manifest_key(key)))["status"] == "complete"
    assert emitted_metrics(capsys.readouterr().out)["RowsScored"] == 4


def test_the_handlers_build_their_client_settings_and_model_once_per_container(lambda_env, load_event, monkeypatch):
    app = load_handler("sweep_pending")
    app.handler(load_event("scheduled"), FakeContext())
    monkeypatch.setenv("OUTPUT_PREFIX", "elsewhere/")  # a warm container does not re-read its environment

    app.handler(load_event("scheduled"), FakeContext())

    assert app._dependencies.cache_info().misses == 1 and app._dependencies.cache_info().hits == 1
