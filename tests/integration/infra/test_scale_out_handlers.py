"""The scale-out handlers (plan_run, score_chunk, merge_run) and a backlog item, invoked with the events/ files.

The events describe one upload, `DECEMBER` below; the test puts it at the event's key, so
`sam local invoke PlanRunFunction -e events/plan_run.json` works the same against a bucket holding it.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from lambda_harness import EVENT_BUCKET, FakeContext, load_handler, put, read
from tweetmood import keys
from tweetmood.settings import Settings

pytestmark = pytest.mark.integration

DECEMBER = b"id,text\n" + b"".join(b'%d,"so happy today, #%d"\n' % (i, i) for i in range(40))


@pytest.fixture
def scale_out_env(lambda_env, monkeypatch):
    """The functions' environment with chunks small enough (16 rows, 1-tweet batches) for 40 rows to make three."""
    monkeypatch.setenv("CHUNK_ROWS", "16")
    monkeypatch.setenv("BATCH_SIZE", "1")
    put(lambda_env, "incoming/2026/december tweets.csv", DECEMBER)
    return lambda_env


def test_the_scale_out_events_describe_one_upload_as_each_state_passes_it_on(load_event):
    plan, item, run = load_event("plan_run"), load_event("score_chunk"), load_event("merge_run")
    assert plan["etag"] == hashlib.md5(DECEMBER).hexdigest() and plan["bucket"] == EVENT_BUCKET
    assert {k: run[k] for k in ("bucket", "key", "etag", "run_id")} == {k: plan[k] for k in ("bucket", "key", "etag", "run_id")}
    assert item["run_id"] == run["run_id"] and item["staging"] == run["staging"]
    assert load_event("fail_run")["run"] == plan
    assert load_event("backlog_item")["tweetmood_backlog_item"]["key"] == plan["key"]


def test_plan_then_each_chunk_then_merge_score_the_upload_in_input_order(scale_out_env, load_event):
    s3 = scale_out_env
    settings = Settings.from_env()

    run = load_handler("plan_run").handler(load_event("plan_run"), FakeContext())
    items = json.loads(read(s3, run["plan_key"]))
    chunk = load_handler("score_chunk")
    counts = [chunk.handler(item, FakeContext()) for item in reversed(items)]
    summary = load_handler("merge_run").handler(run, FakeContext())

    assert {k: v for k, v in run.items() if k != "started"} == {k: v for k, v in load_event("merge_run").items() if k != "started"}
    assert items[1] == load_event("score_chunk")
    assert sorted(c["index"] for c in counts) == [0, 1, 2] and sum(c["rows"] for c in counts) == 40
    key = "incoming/2026/december tweets.csv"
    assert summary == {
        "status": "complete", "rows_read": 40, "rows_scored": 40, "rows_rejected": 0,
        "output_key": keys.output_key_for(key, settings), "manifest_key": keys.manifest_key_for(key, settings),
    }
    rows = [json.loads(line) for line in read(s3, summary["output_key"]).splitlines()]
    assert [(r["line"], r["id"]) for r in rows] == [(i + 2, str(i)) for i in range(40)]
    assert s3.list_objects_v2(Bucket=EVENT_BUCKET, Prefix=run["staging"])["KeyCount"] == 0


def test_the_fail_event_writes_a_failed_manifest_naming_the_error_message(scale_out_env, load_event):
    s3 = scale_out_env

    summary = load_handler("merge_run").handler(load_event("fail_run"), FakeContext())

    manifest = json.loads(read(s3, summary["manifest_key"]))
    assert summary["status"] == manifest["status"] == "failed"
    assert "PartsMissing" in manifest["reason"] and "chunk 1 of incoming/2026/december tweets.csv" in manifest["reason"]
    assert "stackTrace" not in manifest["reason"]
    assert s3.list_objects_v2(Bucket=EVENT_BUCKET, Prefix=summary["output_key"])["KeyCount"] == 0


def test_a_backlog_item_below_the_inline_bound_is_scored_inline_like_an_upload(scale_out_env, load_event):
    s3 = scale_out_env

    summary = load_handler("score_object").handler(load_event("backlog_item"), FakeContext())

    assert [(s["key"], s["rows_scored"]) for s in summary["scored"]] == [("incoming/2026/december tweets.csv", 40)]
    manifest = json.loads(read(s3, keys.manifest_key_for("incoming/2026/december tweets.csv", Settings.from_env())))
    assert manifest["status"] == "complete" and manifest["source_etag"] == load_event("backlog_item")["tweetmood_backlog_item"]["etag"]
