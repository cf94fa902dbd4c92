"""Exactly one result per input version: claims made with S3 conditional writes (moto implements
IfNoneMatch/IfMatch on PutObject), repeated and concurrent deliveries, new versions."""

from __future__ import annotations

import threading

import orjson
import pytest

from faults import BUCKET, Clock, FaultyS3, get, jsonl, keys_under, put, tweets
from tweetmood import claims
from tweetmood.localstack import s3_object_created_event
from tweetmood.service import handle_s3_event, sweep_pending
from tweetmood.settings import Settings

pytestmark = pytest.mark.integration
SETTINGS = Settings(bucket=BUCKET)
PLENTY = lambda: 600_000  # noqa: E731


def deliver(s3, objects, classifier, request_id: str, **kw) -> dict:
    event = s3_object_created_event(BUCKET, objects)
    return handle_s3_event(event, s3=s3, settings=SETTINGS, classifier=classifier, remaining_ms=PLENTY,
                           request_id=request_id, **kw)


# --- the claim object itself ---------------------------------------------------------


def test_a_claim_can_be_created_once_and_a_live_one_is_not_taken(s3):
    first = claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v1", request_id="A", lease_ms=60_000, now_ms=0)
    assert not first.taken_over
    with pytest.raises(claims.ClaimHeld, match="A is scoring this version"):
        claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v1", request_id="B", lease_ms=60_000, now_ms=1_000)
    with pytest.raises(claims.ClaimHeld, match="earlier version"):
        claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v2", request_id="C", lease_ms=60_000, now_ms=1_000)
    assert orjson.loads(get(s3, "scored/a.claim"))["request_id"] == "A"


def test_an_expired_claim_is_taken_over_and_its_old_holder_can_no_longer_write_it(s3):
    old = claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v1", request_id="A", lease_ms=60_000, now_ms=0)
    # Still live inside the clock-skew allowance after the lease:
    with pytest.raises(claims.ClaimHeld):
        claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v1", request_id="B", lease_ms=60_000,
                       now_ms=60_000 + claims.CLOCK_SKEW_MS - 1)
    new = claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v1", request_id="B", lease_ms=60_000,
                         now_ms=60_000 + claims.CLOCK_SKEW_MS + 1)
    assert new.taken_over and new.etag != old.etag
    assert claims.release(s3, BUCKET, old, now_ms=100_000) is False  # IfMatch on its stale ETag fails
    assert orjson.loads(get(s3, "scored/a.claim"))["request_id"] == "B"
    assert claims.release(s3, BUCKET, new, now_ms=100_000) is True
    assert orjson.loads(get(s3, "scored/a.claim"))["state"] == "released"


def test_a_checkpoint_is_handed_on_only_for_the_same_source_version(s3):
    claim = claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v1", request_id="A", lease_ms=1, now_ms=0)
    checkpoint = claims.Checkpoint(source_etag="v1", upload_id="up-1", parts=[{"ETag": "e", "PartNumber": 1}], rows_done=7)
    claims.release(s3, BUCKET, claim, now_ms=1, checkpoint=checkpoint)
    same = claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v1", request_id="B", lease_ms=1, now_ms=2)
    assert same.checkpoint == checkpoint and same.stale_upload_id is None
    # B dies holding it; after its lease the next version's run gets no checkpoint, only the upload to abort.
    newer = claims.acquire(s3, BUCKET, "scored/a.claim", source_etag="v2", request_id="C", lease_ms=1,
                           now_ms=3 + claims.CLOCK_SKEW_MS)
    assert newer.checkpoint is None and newer.stale_upload_id == "up-1"


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
    rows = jsonl(get(s3, "scored/twice.txt.jsonl"))
    assert [r["line"] for r in rows] == list(range(1, 501))
    manifest = orjson.loads(get(s3, "scored/twice.txt.jsonl.manifest.json"))
    assert manifest["status"] == "complete" and manifest["source_etag"] == obj[2].strip('"')
    assert sorted(keys_under(s3, "scored/")) == [
        "scored/twice.txt.jsonl", "scored/twice.txt.jsonl.claim", "scored/twice.txt.jsonl.manifest.json"
    ]


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
    claim = "scored/race.txt.jsonl.claim"
    # create (refused: A's released claim is there), take over, re-read the manifest, give back: no output write
    assert writes == [(claim, True, False), (claim, False, True), (claim, False, True)]
    assert len(jsonl(get(s3, "scored/race.txt.jsonl"))) == 50


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
    assert orjson.loads(get(s3, "scored/ver.txt.jsonl.manifest.json"))["source_etag"] == v1[2].strip('"')

    swept = sweep_pending(s3=s3, settings=SETTINGS, classifier=tiny_classifier, remaining_ms=PLENTY)

    assert [s["rows_read"] for s in swept["scored"]] == [10]
    manifest = orjson.loads(get(s3, "scored/ver.txt.jsonl.manifest.json"))
    assert manifest["source_etag"] == v2[2].strip('"') and len(jsonl(get(s3, "scored/ver.txt.jsonl"))) == 10


def test_a_holder_that_died_is_taken_over_once_its_lease_runs_out(s3, tiny_classifier):
    obj = put(s3, "incoming/dead.txt", tweets(30))
    clock = Clock()
    claims.acquire(s3, BUCKET, "scored/dead.txt.jsonl.claim", source_etag=obj[2].strip('"'), request_id="ghost",
                   lease_ms=900_000, now_ms=int(clock() * 1000))
    blocked = deliver(s3, [obj], tiny_classifier, "B", clock=clock)
    assert "ghost is scoring" in blocked["in_progress"][0]["reason"]
    clock.now += 900 + claims.CLOCK_SKEW_MS / 1000 + 1

    later = deliver(s3, [obj], tiny_classifier, "C", clock=clock)

    assert [s["rows_read"] for s in later["scored"]] == [30]
