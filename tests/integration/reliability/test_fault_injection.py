"""No half results: with S3 and the model failing at chosen points, each run leaves the previous complete
result or nothing visible, and a retry produces the full result."""

from __future__ import annotations

import moto.s3.models
import orjson
import pytest
from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import MockRawResponse

from faults import (
    BUCKET, THROTTLED, BreakingBody, FaultyS3, client_error, get, jsonl, keys_under, pending_uploads, put, tweets,
)
from tweetmood import storage
from tweetmood.inline import read_manifest
from tweetmood.keys import claim_key_for, manifest_key_for, output_key_for
from tweetmood.manifest import OutputManifest
from tweetmood.service import handle_s3_event, sweep_pending
from tweetmood.settings import Settings
from tweetmood.storage import S3Storage
from tweetmood_cli.localstack import s3_object_created_event

pytestmark = pytest.mark.integration
SETTINGS = Settings(bucket=BUCKET)
PLENTY = lambda: 600_000  # noqa: E731
N = 3000


@pytest.fixture
def small_parts(monkeypatch):
    """64 KiB parts (and S3's part minimum lowered to match in moto), so a few thousand rows span many parts."""
    monkeypatch.setattr(storage, "PART_SIZE", 64 << 10)
    monkeypatch.setattr(storage, "MIN_PART_SIZE", 16 << 10)
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 1 << 10)


def deliver(s3, obj, classifier, settings=SETTINGS) -> dict:
    return handle_s3_event(s3_object_created_event(BUCKET, [obj]), storage=S3Storage(s3), settings=settings, classifier=classifier,
                           remaining_ms=PLENTY)


def manifest(s3, key: str) -> OutputManifest:
    return read_manifest(S3Storage(s3), BUCKET, key, SETTINGS)


def assert_full_result(s3, key: str, n: int, etag: str) -> None:
    rows = jsonl(get(s3, output_key_for(key, SETTINGS)))
    assert [r["line"] for r in rows] == list(range(1, n + 1))
    m = manifest(s3, key)
    assert m.status == "complete" and m.source_etag == etag.strip('"') and m.rows_read == n
    assert pending_uploads(s3) == []


def test_a_body_that_breaks_mid_stream_leaves_nothing_and_a_retry_scores_it_all(s3, tiny_classifier):
    obj = put(s3, "incoming/broken.txt", tweets(N))
    faulty = FaultyS3(s3)
    faulty.body_wrapper = lambda kw, body: BreakingBody(body, 20_000) if kw["Key"] == obj[0] else body

    summary = deliver(faulty, obj, tiny_classifier)

    (failed,) = summary["failed"]
    assert failed["retryable"] and "ReadTimeoutError" in failed["reason"] and "attempt 1 of 3" in failed["reason"]
    assert keys_under(s3, "scored/") == [claim_key_for(obj[0], SETTINGS), manifest_key_for(obj[0], SETTINGS)]
    assert manifest(s3, obj[0]).retryable and pending_uploads(s3) == []
    assert orjson.loads(get(s3, claim_key_for("incoming/broken.txt", SETTINGS)))["state"] == "released"

    retried = deliver(s3, obj, tiny_classifier)

    assert [s["rows_read"] for s in retried["scored"]] == [N]
    assert_full_result(s3, obj[0], N, obj[2])
    assert manifest(s3, obj[0]).attempts == 2


def test_a_new_version_that_fails_leaves_the_previous_complete_result_untouched(s3, tiny_classifier):
    v1 = put(s3, "incoming/kept.txt", tweets(40))
    deliver(s3, v1, tiny_classifier)
    before = get(s3, output_key_for("incoming/kept.txt", SETTINGS))
    v2 = put(s3, "incoming/kept.txt", tweets(N))
    faulty = FaultyS3(s3)
    faulty.body_wrapper = lambda kw, body: BreakingBody(body, 20_000) if kw["Key"] == v2[0] else body

    deliver(faulty, v2, tiny_classifier)

    assert get(s3, output_key_for("incoming/kept.txt", SETTINGS)) == before  # v1's complete bytes, never half of v2
    m = manifest(s3, v2[0])
    assert m.status == "failed" and m.source_etag == v2[2].strip('"')  # and the manifest says they are not v2's
    deliver(s3, v2, tiny_classifier)
    assert_full_result(s3, v2[0], N, v2[2])


def test_upload_parts_throttled_past_the_sdk_retries_leave_nothing_visible_and_the_retry_scores_it_all(
    s3, tiny_classifier, small_parts
):
    obj = put(s3, "incoming/throttled.txt", tweets(N))
    faulty = FaultyS3(s3)
    rule = faulty.fail("upload_part", when=lambda n, kw: n >= 3, error=THROTTLED)  # parts 1-2 land, then SlowDown

    summary = deliver(faulty, obj, tiny_classifier)

    (failed,) = summary["failed"]
    assert failed["retryable"] and "SlowDown" in failed["reason"] and rule.hits == 1
    assert output_key_for("incoming/throttled.txt", SETTINGS) not in keys_under(s3, output_key_for("incoming/throttled.txt", SETTINGS))
    claim = orjson.loads(get(s3, claim_key_for("incoming/throttled.txt", SETTINGS)))
    assert claim["state"] == "released" and pending_uploads(s3) == []  # the parts that landed are dropped

    retried = deliver(s3, obj, tiny_classifier)

    assert [s["rows_read"] for s in retried["scored"]] == [N]
    assert_full_result(s3, obj[0], N, obj[2])


def test_sdk_retries_absorb_throttling_of_upload_part(s3, tiny_classifier, small_parts, monkeypatch):
    """The real botocore retry path: S3 answers 503 SlowDown twice, the SDK backs off and retries."""
    obj = put(s3, "incoming/slow.txt", tweets(N))
    throttled = []

    def slow_down(request, **kwargs):
        if len(throttled) < 2:
            throttled.append(request.url)
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            return AWSResponse(request.url, 503, {}, MockRawResponse(body))
        return None

    s3.meta.events.register_first("before-send.s3.UploadPart", slow_down)
    monkeypatch.setattr("time.sleep", lambda s: None)  # the SDK's backoff, not the test, should wait

    summary = deliver(s3, obj, tiny_classifier)

    assert len(throttled) == 2 and [s["rows_read"] for s in summary["scored"]] == [N]
    assert_full_result(s3, obj[0], N, obj[2])


def test_a_failing_result_put_leaves_no_result_and_the_retry_writes_it(s3, tiny_classifier):
    obj = put(s3, "incoming/put.txt", tweets(30))
    faulty = FaultyS3(s3)
    faulty.fail("put_object", when=lambda n, kw: kw["Key"] == output_key_for("incoming/put.txt", SETTINGS),
                error=lambda op: ConnectionResetError("connection reset by peer"))

    summary = deliver(faulty, obj, tiny_classifier)

    assert summary["failed"][0]["retryable"] and "ConnectionResetError" in summary["failed"][0]["reason"]
    assert output_key_for("incoming/put.txt", SETTINGS) not in keys_under(s3, "scored/")
    deliver(s3, obj, tiny_classifier)
    assert_full_result(s3, obj[0], 30, obj[2])


def test_a_failing_manifest_put_is_reported_retryable_and_the_claim_is_given_back(s3, tiny_classifier):
    obj = put(s3, "incoming/man.txt", tweets(30))
    faulty = FaultyS3(s3)
    faulty.fail("put_object", when=lambda n, kw: kw["Key"].endswith(".manifest.json"), error=THROTTLED)

    summary = deliver(faulty, obj, tiny_classifier)

    assert summary["failed"] == [{"key": obj[0], "reason": summary["failed"][0]["reason"], "retryable": True}]
    assert manifest(s3, obj[0]) is None  # the output may be there, but without a manifest it is not a result
    assert orjson.loads(get(s3, claim_key_for("incoming/man.txt", SETTINGS)))["state"] == "released"
    deliver(s3, obj, tiny_classifier)
    assert_full_result(s3, obj[0], 30, obj[2])


def test_a_model_that_fails_mid_file_leaves_nothing_and_the_sweep_scores_it_later(s3, tiny_classifier):
    class Broken:
        labels, version, sha256 = tiny_classifier.labels, tiny_classifier.version, tiny_classifier.sha256
        lengths = tiny_classifier.lengths

        def predict_proba(self, texts):
            raise RuntimeError("onnxruntime: bad allocation")

    obj = put(s3, "incoming/model.txt", tweets(N))
    summary = deliver(s3, obj, Broken())
    assert summary["failed"][0]["retryable"] and "bad allocation" in summary["failed"][0]["reason"]
    assert output_key_for("incoming/model.txt", SETTINGS) not in keys_under(s3, "scored/")

    swept = sweep_pending(storage=S3Storage(s3), settings=SETTINGS, classifier=tiny_classifier, remaining_ms=PLENTY)

    assert [s["key"] for s in swept["scored"]] == [obj[0]]
    assert_full_result(s3, obj[0], N, obj[2])


def test_running_out_of_time_before_a_part_is_worth_keeping_fails_retryably_and_the_sweep_finishes(s3, tiny_classifier):
    obj = put(s3, "incoming/late.txt", tweets(N))
    looks = iter([60_000, 60_000] + [1_000] * 100)  # the event check and the lease, then the deadline is near

    summary = handle_s3_event(s3_object_created_event(BUCKET, [obj]), storage=S3Storage(s3), settings=SETTINGS,
                              classifier=tiny_classifier, remaining_ms=lambda: next(looks))

    (failed,) = summary["failed"]  # 256 rows are well under S3's 5 MiB part minimum: nothing to keep
    assert failed["retryable"] and "about to time out" in failed["reason"] and failed["rows_read"] == 256
    assert output_key_for("incoming/late.txt", SETTINGS) not in keys_under(s3, "scored/") and pending_uploads(s3) == []
    sweep_pending(storage=S3Storage(s3), settings=SETTINGS, classifier=tiny_classifier, remaining_ms=PLENTY)
    assert_full_result(s3, obj[0], N, obj[2])


def test_a_manifest_is_found_by_listing_so_a_403_for_missing_keys_does_no_harm(s3, tiny_classifier):
    """In AWS, without an unconditioned s3:ListBucket, GetObject of a missing key is 403 AccessDenied."""
    obj = put(s3, "incoming/new.txt", tweets(10))
    aws_like = FaultyS3(s3)

    def missing(n, kw):
        return "Contents" not in s3.list_objects_v2(Bucket=kw["Bucket"], Prefix=kw["Key"], MaxKeys=1)

    aws_like.fail("get_object", when=missing, error=client_error("AccessDenied", 403, "Access Denied"))

    summary = deliver(aws_like, obj, tiny_classifier)

    assert [s["rows_read"] for s in summary["scored"]] == [10]
    assert not any(op == "get_object" and kw["Key"].endswith(".manifest.json") for op, kw in aws_like.log)


def test_the_output_becomes_visible_whole_before_its_manifest_and_the_claim_is_given_back_last(
    s3, tiny_classifier, small_parts
):
    obj = put(s3, "incoming/order.txt", tweets(N))
    watched = FaultyS3(s3)
    visible_during_parts = []
    watched.before["upload_part"] = lambda kw: visible_during_parts.append(
        keys_under(s3, output_key_for(obj[0], SETTINGS)))

    deliver(watched, obj, tiny_classifier)

    role = {output_key_for(obj[0], SETTINGS): "result", claim_key_for(obj[0], SETTINGS): "claim",
            manifest_key_for(obj[0], SETTINGS): "manifest"}
    writes = [(op, role[kw["Key"]]) for op, kw in watched.log
              if op in ("put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload")]
    parts = [w for w in writes if w[0] == "upload_part"]
    assert len(parts) > 3
    assert writes == [("put_object", "claim"), ("create_multipart_upload", "result"), *parts,
                      ("complete_multipart_upload", "result"), ("put_object", "manifest"), ("put_object", "claim")]
    assert all(seen == [] for seen in visible_during_parts)  # nothing half-done shows
    assert_full_result(s3, obj[0], N, obj[2])
