"""Exactly one result per input version: claims made with S3 conditional writes (moto implements
IfNoneMatch/IfMatch on PutObject), repeated and concurrent deliveries, new versions."""

from __future__ import annotations

import threading

import orjson
import pytest

from faults import BUCKET, Clock, FaultyS3, get, jsonl, keys_under, put, tweets
from tweetmood import claims
from tweetmood_cli.localstack import s3_object_created_event
from tweetmood.keys import claim_key_for, manifest_key_for, output_key_for
from tweetmood.service import handle_s3_event, sweep_pending
from tweetmood.storage import S3Storage
from tweetmood.settings import Settings

pytestmark = pytest.mark.integration
SETTINGS = Settings(bucket=BUCKET)
PLENTY = lambda: 600_000  # noqa: E731
CLAIM = claim_key_for("incoming/a.txt", SETTINGS)


def deliver(s3, objects, classifier, request_id: str, **kw) -> dict:
    event = s3_object_created_event(BUCKET, objects)
    return handle_s3_event(event, storage=S3Storage(s3), settings=SETTINGS, classifier=classifier, remaining_ms=PLENTY,
                           request_id=request_id, **kw)


# --- the claim object itself ---------------------------------------------------------


def test_a_claim_can_be_created_once_and_a_live_one_is_not_taken(s3):
    first = claims.acquire(S3Storage(s3), BUCKET, CLAIM, source_etag="v1", request_id="A", lease_ms=60_000, now_ms=0)
    assert not first.taken_over
    with pytest.raises(claims.ClaimHeld, match="A is scoring this version"):
        claims.acquire(S3Storage(s3), BUCKET, CLAIM, source_etag="v1", request_id="B", lease_ms=60_000, now_ms=1_000)
    with pytest.raises(claims.ClaimHeld, match="earlier version"):
        claims.acquire(S3Storage(s3), BUCKET, CLAIM, source_etag="v2", request_id="C", lease_ms=60_000, now_ms=1_000)
    assert orjson.loads(get(s3, CLAIM))["request_id"] == "A"


def test_an_expired_claim_is_taken_over_and_its_old_holder_can_no_longer_write_it(s3):
    old = claims.acquire(S3Storage(s3), BUCKET, CLAIM, source_etag="v1", request_id="A", lease_ms=60_000, now_ms=0)
    # Still live inside the clock-skew allowance after the lease:
    with pytest.raises(claims.ClaimHeld):
        claims.acquire(S3Storage(s3), BUCKET, CLAIM, source_etag="v1", request_id="B", lease_ms=60_000,
                       now_ms=60_000 + claims.CLOCK_SKEW_MS - 1)
    new = claims.acquire(S3Storage(s3), BUCKET, CLAIM, source_etag="v1", request_id="B", lease_ms=60_000,
                         now_ms=60_000 + claims.CLOCK_SKEW_MS + 1)
    assert new.taken_over and new.etag != old.etag
    assert claims.release(S3Storage(s3), BUCKET, old, now_ms=100_000) is False  # IfMatch on its stale ETag fails
    assert orjson.loads(get(s3, CLAIM))["request_id"] == "B"
    assert claims.release(S3Storage(s3), BUCKET, new, now_ms=100_000) is True
    assert orjson.loads(get(s3, CLAIM))["state"] == "released"


# --- deliveries ----------------------------------------------------------------------


class Gate:
    """A classifier that stops in its first predict until the test lets it go."""

    def __init__(self, classifier):
        self._inner = classifier
        self.labels, self.version, self.sha256 = classifier.labels, classifier.version, classifier.sha256
        self.lengths = classifier.lengths
        self.entered, self.go = threading.Event(), threading.Event()

    def predict_proba(self, texts):
        self.entered.set()
        assert self.go.wait(30), "the test never let the first delivery go on"
        return self._inner.predict_proba(texts)


def test_two_concurrent_deliveries_give_one_complete_result_and_the_second_backs_off(s3, tiny_classifier):
    obj = put(s3, "incoming/twice.txt", tweets(500))
    gate = Gate(tiny_classifier)
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(deliver(s3, [obj], gate, "request-A")))
    worker.start()
    assert gate.entered.wait(30)

    second = deliver(s3, [obj], tiny_classifier, "request-B")  # while A is mid-file

    gate.go.set()
    worker.join(30)
    assert second["scored"] == second["failed"] == []
    assert "request-A is scoring this version" in second["in_progress"][0]["reason"]
    assert [s["rows_read"] for s in first["scored"]] == [500]
    rows = jsonl(get(s3, output_key_for("incoming/twice.txt", SETTINGS)))
    assert [r["line"] for r in rows] == list(range(1, 501))
    manifest = orjson.loads(get(s3, manifest_key_for("incoming/twice.txt", SETTINGS)))
    assert manifest["status"] == "complete" and manifest["source_etag"] == obj[2].strip('"')
    assert sorted(keys_under(s3, "scored/")) == sorted(
        f("incoming/twice.txt", SETTINGS) for f in (output_key_for, claim_key_for, manifest_key_for))


def test_a_delivery_that_claims_just_after_the_first_one_finished_does_not_score_again(s3, tiny_classifier):
    obj = put(s3, "incoming/race.txt", tweets(50))
    late = FaultyS3(s3)
    # B has read "no manifest" and opened the source; A now runs start to finish before B claims.
    late.before["get_object"] = lambda kw: (
        deliver(s3, [obj], tiny_classifier, "request-A") if kw["Key"] == obj[0] and late.calls["get_object"] == 1 else None
    )

    second = deliver(late, [obj], tiny_classifier, "request-B")

    assert second["scored"] == [] and "already scored" in second["skipped"][0]["reason"]
    writes = [(kw["Key"], "IfNoneMatch" in kw, "IfMatch" in kw) for op, kw in late.log
              if op in ("put_object", "create_multipart_upload")]
    claim = claim_key_for("incoming/race.txt", SETTINGS)
    # create (refused: A's released claim is there), take over, re-read the manifest, give back: no output write
    assert writes == [(claim, True, False), (claim, False, True), (claim, False, True)]
    assert len(jsonl(get(s3, output_key_for("incoming/race.txt", SETTINGS)))) == 50


def test_a_repeated_event_for_the_same_etag_writes_nothing(s3, tiny_classifier):
    obj = put(s3, "incoming/again.txt", tweets(20))
    deliver(s3, [obj], tiny_classifier, "A")
    watched = FaultyS3(s3)
    again = deliver(watched, [obj], tiny_classifier, "B")
    assert "already scored" in again["skipped"][0]["reason"]
    assert [op for op, _ in watched.log] == ["list_objects_v2", "get_object"]  # read the manifest, nothing else


def test_a_new_version_uploaded_while_the_old_one_is_scored_is_scored_after_it(s3, tiny_classifier):
    v1 = put(s3, "incoming/ver.txt", tweets(300))
    gate = Gate(tiny_classifier)
    worker = threading.Thread(target=lambda: deliver(s3, [v1], gate, "request-A"))
    worker.start()
    assert gate.entered.wait(30)
    v2 = put(s3, "incoming/ver.txt", tweets(10))
    waiting = deliver(s3, [v2], tiny_classifier, "request-B")
    assert "earlier version" in waiting["in_progress"][0]["reason"]
    gate.go.set()
    worker.join(30)
    assert orjson.loads(get(s3, manifest_key_for("incoming/ver.txt", SETTINGS)))["source_etag"] == v1[2].strip('"')

    swept = sweep_pending(storage=S3Storage(s3), settings=SETTINGS, classifier=tiny_classifier, remaining_ms=PLENTY)

    assert [s["rows_read"] for s in swept["scored"]] == [10]
    manifest = orjson.loads(get(s3, manifest_key_for("incoming/ver.txt", SETTINGS)))
    assert manifest["source_etag"] == v2[2].strip('"') and len(jsonl(get(s3, output_key_for("incoming/ver.txt", SETTINGS)))) == 10


def test_a_holder_that_died_is_taken_over_once_its_lease_runs_out(s3, tiny_classifier):
    obj = put(s3, "incoming/dead.txt", tweets(30))
    clock = Clock()
    claims.acquire(S3Storage(s3), BUCKET, claim_key_for("incoming/dead.txt", SETTINGS), source_etag=obj[2].strip('"'), request_id="ghost",
                   lease_ms=900_000, now_ms=int(clock() * 1000))
    blocked = deliver(s3, [obj], tiny_classifier, "B", clock=clock)
    assert "ghost is scoring" in blocked["in_progress"][0]["reason"]
    clock.now += 900 + claims.CLOCK_SKEW_MS / 1000 + 1

    later = deliver(s3, [obj], tiny_classifier, "C", clock=clock)

    assert [s["rows_read"] for s in later["scored"]] == [30]
