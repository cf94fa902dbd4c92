"""score_s3_object, handle_s3_event (with its routing) and sweep_pending against moto's S3 and Step Functions."""

from __future__ import annotations

import gzip
import itertools
import json

import orjson
import pytest

from tweetmood.executions import StateMachines
from tweetmood.inline import score_s3_object as score_with_storage
from tweetmood.keys import claim_key_for, legacy_manifest_key_for, manifest_key_for, output_key_for
from tweetmood.manifest import OutputManifest
from tweetmood.service import handle_s3_event, sweep_pending
from tweetmood.settings import Settings
from tweetmood.storage import MultipartSink, S3Storage
from tweetmood_cli.localstack import s3_object_created_event

pytestmark = pytest.mark.integration

BUCKET = "tweetmood-test"
SETTINGS = Settings(bucket=BUCKET)
PLENTY = lambda: 600_000  # noqa: E731  (ms left: far from the safety margin)


def put(s3, key: str, body: bytes) -> tuple[str, int, str]:
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]
    return key, len(body), etag


def get(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def score_s3_object(s3, bucket, key, **kw):
    return score_with_storage(S3Storage(s3), bucket, key, **kw)


def stored_manifest(s3, key: str) -> OutputManifest:
    return OutputManifest.from_json(get(s3, manifest_key_for(key, SETTINGS)))


def output_rows(s3, key: str) -> list[dict]:
    return [orjson.loads(x) for x in get(s3, output_key_for(key, SETTINGS)).splitlines()]


def keys_under(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def handle(s3, event, classifier, remaining_ms=PLENTY, settings=SETTINGS, machines=None) -> dict:
    summary = handle_s3_event(event, storage=S3Storage(s3), settings=settings, classifier=classifier,
                              remaining_ms=remaining_ms, machines=machines)
    json.dumps(summary)  # must be JSON-able: it is the Lambda's return value
    return summary


def test_an_object_is_scored_to_the_output_prefix_with_its_manifest_last(s3, tiny_classifier):
    key, size, etag = put(s3, "incoming/batch/a.csv", b'id,text\n1,"so happy, truly"\n2,\n3,"sad ""day"""\n')
    manifest = score_s3_object(s3, BUCKET, key, settings=SETTINGS, classifier=tiny_classifier, etag=etag)
    assert manifest.status == "complete" and manifest.output_key == output_key_for(key, SETTINGS)
    assert manifest.source_etag == etag.strip('"') and manifest.source_size == size and manifest.attempts == 1
    rows = output_rows(s3, key)
    assert [r.get("id") for r in rows] == ["1", None, "3"] and rows[1]["error"] == "empty_text"
    assert stored_manifest(s3, key) == manifest
    assert manifest.rows_read == manifest.rows_scored + manifest.rows_rejected == len(rows) == 3
    assert sorted(keys_under(s3, "scored/")) == sorted([
        output_key_for(key, SETTINGS), claim_key_for(key, SETTINGS), manifest_key_for(key, SETTINGS)
    ])
    assert json.loads(get(s3, claim_key_for(key, SETTINGS)))["state"] == "released"
    assert get(s3, manifest_key_for(key, SETTINGS)).count(b"\n") == 1  # one JSON line, for Athena


def test_a_repeated_event_is_skipped_and_a_forced_rescore_gives_identical_bytes(s3, tiny_classifier):
    obj = put(s3, "incoming/r.txt", b"first tweet\nsecond tweet \xf0\x9f\x98\x82\n")
    event = s3_object_created_event(BUCKET, [obj])
    assert len(handle(s3, event, tiny_classifier)["scored"]) == 1
    before_output = get(s3, output_key_for(obj[0], SETTINGS))
    before_manifest = get(s3, manifest_key_for(obj[0], SETTINGS))
    again = handle(s3, event, tiny_classifier)
    assert again["scored"] == [] and "already scored" in again["skipped"][0]["reason"]
    assert get(s3, manifest_key_for(obj[0], SETTINGS)) == before_manifest  # nothing rewritten
    forced = score_s3_object(s3, BUCKET, obj[0], settings=SETTINGS, classifier=tiny_classifier, force=True)
    assert forced.complete and get(s3, output_key_for(obj[0], SETTINGS)) == before_output


def test_a_new_version_of_an_object_is_scored_again(s3, tiny_classifier):
    first = put(s3, "incoming/v.txt", b"one\n")
    handle(s3, s3_object_created_event(BUCKET, [first]), tiny_classifier)
    second = put(s3, "incoming/v.txt", b"one\ntwo\n")
    summary = handle(s3, s3_object_created_event(BUCKET, [second]), tiny_classifier)
    assert summary["scored"][0]["rows_read"] == 2
    assert stored_manifest(s3, "incoming/v.txt").source_etag == second[2].strip('"')


def test_a_multi_record_event_with_url_encoded_keys_scores_each_object(s3, tiny_classifier):
    keys = ["incoming/Café reviews/weekend tweets.txt", "incoming/a+b c.jsonl", "incoming/日本/ツイート.csv.gz"]
    bodies = [b"great coffee \xe2\x98\x95\n", b'{"text": "plus and space"}\n', gzip.compress("text\nこんにちは 😀\n".encode())]
    objects = [put(s3, k, b) for k, b in zip(keys, bodies)]
    event = s3_object_created_event(BUCKET, objects)
    assert event["Records"][0]["s3"]["object"]["key"] == "incoming/Caf%C3%A9+reviews/weekend+tweets.txt"
    assert event["Records"][1]["s3"]["object"]["key"] == "incoming/a%2Bb+c.jsonl"
    summary = handle(s3, event, tiny_classifier)
    assert [s["key"] for s in summary["scored"]] == keys and summary["failed"] == summary["skipped"] == []
    assert output_rows(s3, keys[2])[0]["text"] == "こんにちは 😀"
    for key in keys:
        m = stored_manifest(s3, key)
        assert m.rows_read == m.rows_scored + m.rows_rejected == len(output_rows(s3, key)) == 1


def test_objects_that_must_not_be_scored_are_skipped_with_reasons(s3, tiny_classifier):
    objects = [
        put(s3, "incoming/empty.txt", b""),
        put(s3, "elsewhere/x.txt", b"hi\n"),
        put(s3, "scored/loop.txt", b"hi\n"),
        put(s3, "incoming/folder/", b""),
        put(s3, "incoming/notes.pdf", b"%PDF"),
    ]
    summary = handle(s3, s3_object_created_event(BUCKET, objects), tiny_classifier)
    reasons = [s["reason"] for s in summary["skipped"]]
    assert summary["scored"] == summary["failed"] == [] and len(reasons) == 5
    for fragment, reason in zip(["zero-byte", "outside INPUT_PREFIX", "OUTPUT_PREFIX", "folder marker", "not .txt"], reasons):
        assert fragment in reason
    assert keys_under(s3, "scored/") == ["scored/loop.txt"]  # nothing written


def test_removal_events_other_buckets_and_vanished_objects_are_skipped(s3, tiny_classifier):
    removed = s3_object_created_event(BUCKET, [("incoming/gone.txt", 3, "abc")])
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    foreign = s3_object_created_event("someone-elses-bucket", [("incoming/x.txt", 3, "abc")])
    vanished = s3_object_created_event(BUCKET, [("incoming/never-there.txt", 3, "abc")])
    for event, fragment in [(removed, "not an upload"), (foreign, "BUCKET_NAME"), (vanished, "no longer exists")]:
        summary = handle(s3, event, tiny_classifier)
        assert summary["scored"] == summary["failed"] == [] and fragment in summary["skipped"][0]["reason"]


def test_a_bad_file_gets_a_failed_manifest_that_disowns_the_older_output(s3, tiny_classifier):
    good = put(s3, "incoming/f.txt.gz", gzip.compress(b"fine\n"))
    handle(s3, s3_object_created_event(BUCKET, [good]), tiny_classifier)
    bad = put(s3, "incoming/f.txt.gz", b"this is not gzip\n")
    summary = handle(s3, s3_object_created_event(BUCKET, [bad]), tiny_classifier)
    (failed,) = summary["failed"]
    assert "not gzip" in failed["reason"] and failed["output_key"] == output_key_for("incoming/f.txt.gz", SETTINGS)
    manifest = stored_manifest(s3, "incoming/f.txt.gz")
    assert manifest.status == "failed" and not manifest.retryable and manifest.source_etag == bad[2].strip('"')
    # The role may not delete: the older version's output stays, and the manifest says it is not this version's.
    assert sorted(keys_under(s3, "scored/")) == sorted(
        f("incoming/f.txt.gz", SETTINGS) for f in (output_key_for, claim_key_for, manifest_key_for))
    assert output_rows(s3, "incoming/f.txt.gz")[0]["text"] == "fine"
    repeated = handle(s3, s3_object_created_event(BUCKET, [bad]), tiny_classifier)
    assert "already failed and retrying cannot help" in repeated["skipped"][0]["reason"]


def test_an_object_over_max_object_bytes_fails_without_being_read(s3, tiny_classifier):
    obj = put(s3, "incoming/big.txt", b"tweet\n" * 100)
    summary = handle(s3, s3_object_created_event(BUCKET, [obj]), tiny_classifier, settings=Settings(max_object_bytes=100))
    assert "MAX_OBJECT_BYTES" in summary["failed"][0]["reason"]


def test_a_retryable_failure_is_retried_until_max_attempts(s3, tiny_classifier):
    class Flaky:
        labels, version, sha256 = tiny_classifier.labels, tiny_classifier.version, tiny_classifier.sha256
        lengths = tiny_classifier.lengths

        def predict_proba(self, texts):
            raise RuntimeError("onnxruntime hiccup")

    obj = put(s3, "incoming/flaky.txt", b"tweet\n")
    event = s3_object_created_event(BUCKET, [obj])
    settings = Settings(bucket=BUCKET, max_attempts=2)
    summary = handle(s3, event, Flaky(), settings=settings)
    assert "onnxruntime hiccup" in summary["failed"][0]["reason"] and summary["failed"][0]["retryable"]
    assert stored_manifest(s3, obj[0]).attempts == 1 and stored_manifest(s3, obj[0]).retryable
    summary = handle(s3, event, Flaky(), settings=settings)  # the last attempt marks it failed for good
    assert not summary["failed"][0]["retryable"] and "gave up after 2 attempts" in summary["failed"][0]["reason"]
    manifest = stored_manifest(s3, obj[0])
    assert (manifest.attempts, manifest.retryable, manifest.status) == (2, False, "failed")
    summary = handle(s3, event, Flaky(), settings=settings)
    assert "gave up after 2 attempts" in summary["skipped"][0]["reason"]


def test_an_event_stops_before_the_lambda_times_out_and_names_what_is_left(s3, tiny_classifier):
    objects = [put(s3, f"incoming/t{i}.txt", b"hi\n") for i in range(3)]
    clock = iter([60_000, 5_000])
    summary = handle(s3, s3_object_created_event(BUCKET, objects), tiny_classifier, remaining_ms=lambda: next(clock, 0))
    assert [s["key"] for s in summary["scored"]] == ["incoming/t0.txt"]
    assert summary["remaining"] == ["incoming/t1.txt", "incoming/t2.txt"]


def test_the_sweep_scores_only_what_has_no_complete_manifest(s3, tiny_classifier):
    done = put(s3, "incoming/done.txt", b"already\n")
    handle(s3, s3_object_created_event(BUCKET, [done]), tiny_classifier)
    put(s3, "incoming/new1.txt", b"missed event one\n")
    put(s3, "incoming/sub dir/new2.jsonl", b'{"text": "missed event two"}\n')
    put(s3, "incoming/empty.txt", b"")
    put(s3, "incoming/readme.md", b"# not tweets")
    summary = sweep_pending(storage=S3Storage(s3), settings=SETTINGS, classifier=tiny_classifier, remaining_ms=PLENTY)
    json.dumps(summary)
    assert sorted(s["key"] for s in summary["scored"]) == ["incoming/new1.txt", "incoming/sub dir/new2.jsonl"]
    assert (summary["skipped"], summary["ignored"], summary["complete"], summary["remaining"]) == (1, 2, True, [])
    again = sweep_pending(storage=S3Storage(s3), settings=SETTINGS, classifier=tiny_classifier, remaining_ms=PLENTY)
    assert again["scored"] == [] and again["skipped"] == 3


def test_the_sweep_stops_before_its_time_runs_out_and_reports_the_rest(s3, tiny_classifier):
    for i in range(5):
        put(s3, f"incoming/s{i}.txt", b"tweet\n")
    budget = itertools.count(start=100_000, step=-15_000)  # shrinks on every look at the clock (two per file)
    summary = sweep_pending(storage=S3Storage(s3), settings=SETTINGS, classifier=tiny_classifier, remaining_ms=lambda: next(budget))
    assert [s["key"] for s in summary["scored"]] == ["incoming/s0.txt", "incoming/s1.txt", "incoming/s2.txt"]
    assert summary["remaining"] == ["incoming/s3.txt", "incoming/s4.txt"] and summary["complete"] is False
    assert keys_under(s3, output_key_for("incoming/s3", SETTINGS)) == []


def test_the_sweep_needs_a_bucket_name(s3, tiny_classifier):
    with pytest.raises(ValueError, match="BUCKET_NAME"):
        sweep_pending(storage=S3Storage(s3), settings=Settings(), classifier=tiny_classifier, remaining_ms=PLENTY)


def test_large_output_goes_up_in_parts_and_appears_only_on_commit(s3):
    part = 5 << 20  # S3's smallest part
    sink = MultipartSink(s3, BUCKET, "scored/big.jsonl", "application/x-ndjson", part_size=part)
    chunk = b"x" * 99_999 + b"\n"
    for _ in range(120):  # 12 MB: two full parts and a tail
        sink.write(chunk)
        sink.end_row()
    assert keys_under(s3, "scored/") == []  # parts uploaded, nothing visible yet
    assert len(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])) == 1
    sink.commit()
    sink.abort()  # after commit: nothing to undo
    assert get(s3, "scored/big.jsonl") == chunk * 120
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_an_aborted_output_leaves_no_object_and_no_pending_parts(s3):
    sink = MultipartSink(s3, BUCKET, "scored/half.jsonl", "application/x-ndjson", part_size=5 << 20)
    sink.write(b"y" * (6 << 20))
    assert sink.end_row()
    sink.abort()
    assert keys_under(s3, "scored/") == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_csv_output_format_writes_a_csv_object(s3, tiny_classifier):
    settings = Settings(bucket=BUCKET, output_format="csv")
    key, size, etag = put(s3, "incoming/c.txt", b"hello there\n\n")
    manifest = score_s3_object(s3, BUCKET, key, settings=settings, classifier=tiny_classifier, etag=etag)
    lines = get(s3, output_key_for(key, settings)).decode("utf-8").splitlines()
    assert manifest.output_key == "scored/results/c.txt.csv" and manifest.format == "csv"
    assert lines[0].startswith("line,id,text,label,score,") and len(lines) == 1 + manifest.rows_read == 3
    assert s3.head_object(Bucket=BUCKET, Key=output_key_for(key, settings))["ContentType"].startswith("text/csv")


def test_the_sweep_counts_an_input_scored_at_the_legacy_key_as_done(s3, tiny_classifier):
    key, _, etag = put(s3, "incoming/old.txt", b"scored long ago\n")
    legacy = OutputManifest(source_bucket=BUCKET, source_key=key, source_etag=etag.strip('"'), rows_read=1,
                            rows_scored=1)
    s3.put_object(Bucket=BUCKET, Key=legacy_manifest_key_for(key, SETTINGS), Body=legacy.to_json())
    summary = sweep_pending(storage=S3Storage(s3), settings=SETTINGS, classifier=tiny_classifier, remaining_ms=PLENTY)
    assert summary["scored"] == [] and summary["skipped"] == 1
    assert keys_under(s3, manifest_key_for(key, SETTINGS)) == []


@pytest.fixture
def machines(s3):
    """moto's Step Functions with the two state machines; (StateMachines, settings naming them)."""
    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/machine"
    arns = [sfn.create_state_machine(name=n, definition='{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}',
                                     roleArn=role)["stateMachineArn"] for n in ("score-file", "backlog")]
    settings = Settings(bucket=BUCKET, inline_max_bytes=100, state_machine_arn=arns[0],
                        backlog_state_machine_arn=arns[1])
    return StateMachines(sfn), settings, sfn


def test_a_big_upload_starts_the_state_machine_once_and_a_small_one_is_scored_inline(s3, tiny_classifier, machines):
    starter, settings, sfn = machines
    big = put(s3, "incoming/big.txt", b"a tweet that is long enough\n" * 10)
    small = put(s3, "incoming/small.txt", b"short\n")
    event = s3_object_created_event(BUCKET, [big, small])
    summary = handle(s3, event, tiny_classifier, settings=settings, machines=starter)
    assert [s["key"] for s in summary["scored"]] == ["incoming/small.txt"]
    (started,) = summary["started"]
    assert started["key"] == "incoming/big.txt" and not started["already_running"]
    (execution,) = sfn.list_executions(stateMachineArn=settings.state_machine_arn)["executions"]
    assert execution["name"] == started["execution"]
    payload = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert payload == {"bucket": BUCKET, "key": "incoming/big.txt", "etag": big[2].strip('"'), "version_id": None,
                       "run_id": started["execution"]}
    again = handle(s3, s3_object_created_event(BUCKET, [big]), tiny_classifier, settings=settings, machines=starter)
    # A duplicate event is a no-op: same name, so Step Functions returns the running execution or refuses.
    assert again["started"][0]["execution"] == started["execution"]
    assert len(sfn.list_executions(stateMachineArn=settings.state_machine_arn)["executions"]) == 1
    assert keys_under(s3, output_key_for("incoming/big.txt", settings)) == []


def test_a_backlog_item_is_routed_like_an_upload(s3, tiny_classifier, machines):
    starter, settings, _ = machines
    key, size, etag = put(s3, "incoming/late.txt", b"late\n")
    item = {"tweetmood_backlog_item": {"bucket": BUCKET, "key": key, "etag": etag.strip('"'), "size": size}}
    summary = handle(s3, item, tiny_classifier, settings=settings, machines=starter)
    assert [s["key"] for s in summary["scored"]] == [key]


def test_a_sweep_with_many_pending_files_hands_them_to_the_backlog_machine(s3, tiny_classifier, machines):
    starter, settings, sfn = machines
    for i in range(12):
        put(s3, f"incoming/p{i:02d}.txt", b"pending\n")
    summary = sweep_pending(storage=S3Storage(s3), settings=settings, classifier=tiny_classifier,
                            remaining_ms=PLENTY, machines=starter)
    assert summary["scored"] == [] and summary["backlog"]["files"] == 12
    items = json.loads(get(s3, summary["backlog"]["backlog_key"]))
    assert [i["key"] for i in items] == [f"incoming/p{i:02d}.txt" for i in range(12)]
    assert summary["backlog"]["backlog_key"].startswith("scored/staging/")
    (execution,) = sfn.list_executions(stateMachineArn=settings.backlog_state_machine_arn)["executions"]
    assert json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])["files"] == 12
