"""Failures are kept: what the handlers raise (so Lambda retries, then the on-failure queue keeps the event
with its reason) and what they settle themselves (bad files, work another run holds)."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from lambda_harness import EVENT_BUCKET, FakeContext, event_keys, load_handler, manifest_key, put, read
from tweetmood import claims, keys, model_store
from tweetmood.classifier import ModelError
from tweetmood.settings import Settings
from tweetmood.storage import S3Storage

pytestmark = pytest.mark.integration
CSV = b'id,text\n1,"so happy today, truly"\n2,"i miss my mom"\n'
UPLOAD = "incoming/café reviews/monday tweets.csv"  # the key events/s3_put.json names


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"detail-type": "Scheduled Event", "source": "aws.events"}],
                         ids=["empty", "no records", "a scheduled event sent to the wrong function"])
def test_an_event_that_is_not_an_s3_notification_is_raised_as_poison_with_its_reason(lambda_env, event):
    app = load_handler("score_object")
    with pytest.raises(ValueError, match="no Records, so it is not an S3 notification"):
        app.handler(event, FakeContext())


def test_s3s_own_test_event_is_skipped_not_dead_lettered(lambda_env):
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-26T12:00:00.000Z", "Bucket": EVENT_BUCKET}
    summary = load_handler("score_object").handler(event, FakeContext())
    assert "s3:TestEvent" in summary["skipped"][0]["reason"]


def test_a_model_that_fails_to_load_raises_naming_it_and_the_retry_scores_the_file(
    lambda_env, load_event, monkeypatch, tmp_path, tiny_model_dir
):
    s3 = lambda_env
    event = load_event("s3_put")
    put(s3, event_keys(event)[0], CSV)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "missing-model"))
    app = load_handler("score_object")

    with pytest.raises(ModelError, match="missing-model"):
        app.handler(event, FakeContext())

    assert "Contents" not in s3.list_objects_v2(Bucket=EVENT_BUCKET, Prefix="scored/")  # nothing half-done
    monkeypatch.setenv("MODEL_DIR", str(tiny_model_dir))  # the fixed deployment
    model_store.clear_cache()
    summary = app.handler(event, FakeContext())  # a failed cold start is not cached: the retry loads again
    assert [s["rows_scored"] for s in summary["scored"]] == [2]


def test_a_retryable_failure_raises_with_the_file_and_reason_so_lambda_retries(lambda_env, load_event, monkeypatch):
    s3 = lambda_env
    event = load_event("s3_put")
    (key,) = event_keys(event)
    put(s3, key, CSV)
    app = load_handler("score_object")
    _, _, classifier, _ = app._dependencies()

    def broken(texts):
        raise RuntimeError("onnxruntime: out of memory")

    monkeypatch.setattr(classifier, "predict_proba", broken)

    with pytest.raises(app.FilesNotScored, match=r"monday tweets.csv: scoring .*out of memory.*attempt 1 of 3"):
        app.handler(event, FakeContext())

    manifest = json.loads(read(s3, manifest_key(UPLOAD)))
    assert manifest["status"] == "failed" and manifest["retryable"] and manifest["attempts"] == 1


def test_a_bad_file_is_settled_by_its_manifest_and_not_raised(lambda_env, load_event):
    s3 = lambda_env
    event = load_event("s3_put")
    put(s3, event_keys(event)[0], gzip.compress(b"text\nhi\n")[:12])
    summary = load_handler("score_object").handler(event, FakeContext())
    assert summary["failed"][0]["retryable"] is False


def test_a_file_another_run_holds_is_left_to_it_without_raising(lambda_env, load_event):
    s3 = lambda_env
    event = load_event("s3_put")
    etag = put(s3, event_keys(event)[0], CSV)
    claims.acquire(S3Storage(s3), EVENT_BUCKET, keys.claim_key_for(UPLOAD, Settings.from_env()), source_etag=etag,
                   request_id="the-first-delivery", lease_ms=900_000, now_ms=int(time.time() * 1000))

    summary = load_handler("score_object").handler(event, FakeContext())

    assert "the-first-delivery is scoring this version" in summary["in_progress"][0]["reason"]
    assert summary["failed"] == summary["scored"] == []


def test_the_sweep_retries_a_failing_file_max_attempts_times_then_marks_it_failed_for_good(
    lambda_env, load_event, monkeypatch
):
    s3 = lambda_env
    put(s3, "incoming/flaky.txt", b"a tweet\nanother\n")
    monkeypatch.setenv("MAX_ATTEMPTS", "3")
    app = load_handler("sweep_pending")
    _, _, classifier, _ = app._dependencies()
    monkeypatch.setattr(classifier, "predict_proba", lambda texts: (_ for _ in ()).throw(RuntimeError("flaky")))
    flaky_manifest = manifest_key("incoming/flaky.txt")

    seen = []
    for _ in range(3):
        summary = app.handler(load_event("scheduled"), FakeContext())
        (failed,) = summary["failed"]
        manifest = json.loads(read(s3, flaky_manifest))
        seen.append((failed["retryable"], manifest["attempts"], manifest["retryable"]))
    assert seen == [(True, 1, True), (True, 2, True), (False, 3, False)]
    assert "gave up after 3 attempts" in manifest["reason"] and "upload the file again" in manifest["reason"]

    before = read(s3, flaky_manifest)
    summary = app.handler(load_event("scheduled"), FakeContext())
    assert summary["failed"] == [] and summary["skipped"] == 1 and read(s3, flaky_manifest) == before
