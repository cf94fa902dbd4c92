"""The bad-input matrix (tests/bad_inputs.py) uploaded to S3 (moto) and delivered as S3 events:
each object is scored, fails with a manifest saying why, or is skipped with a reason; nothing crashes."""

from __future__ import annotations

import json

import orjson
import pytest

from bad_inputs import CASES, Case
from tweetmood_cli.localstack import s3_object_created_event
from tweetmood.manifest import OutputManifest
from tweetmood.keys import manifest_key_for, output_key_for
from tweetmood.service import handle_s3_event
from tweetmood.settings import Settings
from tweetmood.storage import S3Storage

pytestmark = pytest.mark.integration
BUCKET = "tweetmood-test"


def keys_under(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_upload_is_scored_failed_with_a_reason_or_skipped_with_one(case: Case, s3, tiny_classifier):
    settings = Settings(bucket=BUCKET, **case.settings)
    body = case.body()
    if "/../" in case.key:
        etag = "0" * 32  # refused before any S3 call; such a key is not even uploaded
    else:
        etag = s3.put_object(Bucket=BUCKET, Key=case.key, Body=body)["ETag"]
    before = keys_under(s3, settings.output_prefix)
    event = s3_object_created_event(BUCKET, [(case.key, len(body), etag)])

    summary = handle_s3_event(event, storage=S3Storage(s3), settings=settings, classifier=tiny_classifier, remaining_ms=lambda: 600_000)
    json.dumps(summary)

    if case.skip:
        (skipped,) = summary["skipped"]
        assert case.skip in skipped["reason"] and summary["scored"] == summary["failed"] == []
        assert keys_under(s3, settings.output_prefix) == before  # nothing written: no loop, no stray result
        return
    output_key = output_key_for(case.key, settings)
    manifest = OutputManifest.from_json(
        s3.get_object(Bucket=BUCKET, Key=manifest_key_for(case.key, settings))["Body"].read()
    )
    assert manifest.source_key == case.key and manifest.source_etag == etag.strip('"')
    assert manifest.rows_read == manifest.rows_scored + manifest.rows_rejected
    if case.rows is not None:
        assert manifest.rows_read == case.rows
    if case.failure:
        (failed,) = summary["failed"]
        assert failed["retryable"] is False and case.failure in failed["reason"]
        assert manifest.status == "failed" and case.failure in manifest.reason
        assert output_key not in keys_under(s3, output_key)  # a failed file has no result object
        return
    (scored,) = summary["scored"]
    rows = [orjson.loads(x) for x in s3.get_object(Bucket=BUCKET, Key=output_key)["Body"].read().splitlines()]
    assert scored["rows_read"] == manifest.rows_read == len(rows)
    assert manifest.status == "complete" and manifest.error_counts == case.errors
    if case.first_text is not None:
        assert next(r["text"] for r in rows if "text" in r) == case.first_text
