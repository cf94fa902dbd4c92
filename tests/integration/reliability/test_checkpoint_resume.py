"""Files too big for one invocation: checkpoint when time runs low, go on in the next invocation (the sweep),
and end with exactly one complete result, rows in order, none lost or repeated."""

from __future__ import annotations

import csv
import io

import moto.s3.models
import orjson
import pytest

from faults import BUCKET, Clock, Deadline, FaultyS3, Killed, get, jsonl, keys_under, pending_uploads, put, tweets
from tweetmood import claims, service
from tweetmood.localstack import s3_object_created_event
from tweetmood.service import handle_s3_event, score_stream, sweep_pending
from tweetmood.settings import Settings

pytestmark = pytest.mark.integration
N = 5000  # with CLOCK_EVERY=256 and Deadline(): about 2048 rows per invocation, so three invocations


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    monkeypatch.setattr(service, "PART_SIZE", 64 << 10)
    monkeypatch.setattr(service, "MIN_PART_SIZE", 16 << 10)
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 1 << 10)


def claim_of(s3, output_key: str) -> dict:
    return orjson.loads(get(s3, output_key + ".claim"))


def single_run(data: bytes, classifier, settings: Settings) -> bytes:
    sink = io.BytesIO()
    score_stream(io.BytesIO(data), "incoming/big.txt", classifier, settings, sink)
    return sink.getvalue()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_file_needing_three_invocations_ends_in_one_complete_result(s3, tiny_classifier, fmt):
    settings = Settings(bucket=BUCKET, output_format=fmt)
    data = tweets(N)
    obj = put(s3, "incoming/big.txt", data)
    output = f"scored/big.txt.{fmt}"

    first = handle_s3_event(s3_object_created_event(BUCKET, [obj]), s3=s3, settings=settings,
                            classifier=tiny_classifier, remaining_ms=Deadline(), request_id="event")
    (progress,) = first["in_progress"]
    # 2048 rows were scored; those past the last part under S3's part minimum (16 KiB here) are redone next time.
    done_1 = progress["rows_read"]
    assert 2048 - 100 < done_1 <= 2048 and "next sweep goes on" in progress["reason"]
    assert first["failed"] == first["scored"] == []
    assert keys_under(s3, "scored/") == [output + ".claim"]  # no result, no manifest: nothing half-done shows
    checkpoint = claim_of(s3, output)["checkpoint"]
    assert checkpoint["rows_done"] == done_1 and checkpoint["source_etag"] == obj[2].strip('"')
    assert len(pending_uploads(s3)) == 1 and pending_uploads(s3)[0]["UploadId"] == checkpoint["upload_id"]

    second = sweep_pending(s3=s3, settings=settings, classifier=tiny_classifier, remaining_ms=Deadline())
    (progress,) = second["in_progress"]
    assert done_1 + 2048 - 100 < progress["rows_read"] <= done_1 + 2048 < N
    assert claim_of(s3, output)["checkpoint"]["upload_id"] == checkpoint["upload_id"]  # the same upload goes on
    assert len(claim_of(s3, output)["checkpoint"]["parts"]) > len(checkpoint["parts"])

    third = sweep_pending(s3=s3, settings=settings, classifier=tiny_classifier, remaining_ms=Deadline())
    assert [s["rows_read"] for s in third["scored"]] == [N]

    manifest = orjson.loads(get(s3, output + ".manifest.json"))
    assert manifest["status"] == "complete" and manifest["invocations"] == 3 and manifest["rows_read"] == N
    assert manifest["rows_scored"] + manifest["rows_rejected"] == N and sum(manifest["label_counts"].values()) == N
    assert pending_uploads(s3) == [] and claim_of(s3, output)["state"] == "released"
    whole = get(s3, output)
    alone = single_run(data, tiny_classifier, settings)
    if fmt == "jsonl":
        rows, expected = jsonl(whole), jsonl(alone)
    else:
        rows, expected = list(csv.DictReader(io.StringIO(whole.decode()))), list(csv.DictReader(io.StringIO(alone.decode())))
        assert whole.count(b"line,id,text,label") == 1  # the header is written once, not per invocation
    assert [int(r["line"]) for r in rows] == list(range(1, N + 1))  # in order, none lost, none repeated
    assert [(r["text"], r["label"]) for r in rows] == [(r["text"], r["label"]) for r in expected]
    assert sorted(keys_under(s3, "scored/")) == [output, output + ".claim", output + ".manifest.json"]
    again = sweep_pending(s3=s3, settings=settings, classifier=tiny_classifier, remaining_ms=Deadline())
    assert again["scored"] == [] and again["skipped"] == 1


def test_an_invocation_killed_after_its_checkpoint_is_resumed_from_it_once_its_lease_ends(s3, tiny_classifier):
    settings = Settings(bucket=BUCKET)
    obj = put(s3, "incoming/big.txt", tweets(N))
    clock = Clock()
    handle_s3_event(s3_object_created_event(BUCKET, [obj]), s3=s3, settings=settings, classifier=tiny_classifier,
                    remaining_ms=Deadline(), clock=clock)
    checkpoint = claim_of(s3, "scored/big.txt.jsonl")["checkpoint"]
    # The sweep resumes, uploads more parts, then its Lambda is killed: no checkpoint, no release, nothing.
    dying = FaultyS3(s3)
    with pytest.raises(Killed):
        sweep_pending(s3=dying, settings=settings, classifier=tiny_classifier,
                      remaining_ms=Deadline(step_ms=1_000, kill_at=8, s3=dying), clock=clock)
    assert dying.calls["upload_part"] > 0
    held = claim_of(s3, "scored/big.txt.jsonl")
    assert held["state"] == "running" and held["checkpoint"] == checkpoint
    assert "scored/big.txt.jsonl.manifest.json" not in keys_under(s3, "scored/")

    blocked = sweep_pending(s3=s3, settings=settings, classifier=tiny_classifier, remaining_ms=lambda: 600_000, clock=clock)
    assert "is scoring this version" in blocked["in_progress"][0]["reason"]  # the lease is still running
    clock.now += 100 + claims.CLOCK_SKEW_MS / 1000 + 1  # the dead one's lease (its 100 s deadline) is over

    done = sweep_pending(s3=s3, settings=settings, classifier=tiny_classifier, remaining_ms=lambda: 600_000, clock=clock)

    assert [s["rows_read"] for s in done["scored"]] == [N]
    rows = jsonl(get(s3, "scored/big.txt.jsonl"))
    assert [r["line"] for r in rows] == list(range(1, N + 1))
    manifest = orjson.loads(get(s3, "scored/big.txt.jsonl.manifest.json"))
    assert manifest["rows_read"] == N and manifest["invocations"] == 2 and pending_uploads(s3) == []


def test_a_checkpoint_taken_with_another_model_is_not_resumed(s3, tiny_classifier):
    settings = Settings(bucket=BUCKET)
    obj = put(s3, "incoming/big.txt", tweets(N))
    handle_s3_event(s3_object_created_event(BUCKET, [obj]), s3=s3, settings=settings, classifier=tiny_classifier,
                    remaining_ms=Deadline())
    old_upload = claim_of(s3, "scored/big.txt.jsonl")["checkpoint"]["upload_id"]

    class NewModel:
        labels, sha256, version = tiny_classifier.labels, tiny_classifier.sha256, "a-newer-model"
        predict_proba = staticmethod(tiny_classifier.predict_proba)
        lengths = staticmethod(tiny_classifier.lengths)

    done = sweep_pending(s3=s3, settings=settings, classifier=NewModel(), remaining_ms=lambda: 600_000)

    assert [s["rows_read"] for s in done["scored"]] == [N]
    rows = jsonl(get(s3, "scored/big.txt.jsonl"))
    assert {r["model"] for r in rows} == {"a-newer-model"} and len(rows) == N
    assert old_upload not in [u["UploadId"] for u in pending_uploads(s3)]
