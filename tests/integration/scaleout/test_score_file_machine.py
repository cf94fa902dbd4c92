"""The real score_file.asl.json and backlog.asl.json executed by moto, every Lambda task calling the real handler.

Each input is also scored serially (inline, by ScoreObjectFunction, at another key); the merged result must
equal that serial result byte for byte. moto reports a Distributed Map as succeeded even when a child failed,
so the injected-failure test also proves the merge's parts-versus-plan check is what fails the run.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
from urllib.parse import quote_plus

import pytest

from machine_harness import BUCKET, REPO, FakeContext, import_path, machine_arn
from tweetmood import keys
from tweetmood.scaleout import execution_name

pytestmark = pytest.mark.integration

WORDS = ("so happy today", "i miss my mom", "this is scary", "what a surprise", "i love this song", "so angry right now",
         "feeling lonely", "best day ever", "why would you do that", "cannot stop smiling", "terrified of tomorrow")


def _tweet(rng: random.Random, i: int) -> str:
    return f"{rng.choice(WORDS)} {rng.choice(WORDS)} #{i}"


def plain_txt(rows: int = 230) -> bytes:
    rng = random.Random(12)
    return "".join(_tweet(rng, i) + "\n" for i in range(rows)).encode()


def csv_with_quoted_newlines(rows: int = 200) -> bytes:
    """Every third text spans two physical lines inside its quotes; a cut there would split a record."""
    rng = random.Random(13)
    out = ["id,text\n"]
    for i in range(rows):
        text = _tweet(rng, i)
        out.append(f'{1000 + i},"{text},\nsecond line of {i}"\n' if i % 3 == 0 else f"{1000 + i},{text}\n")
    return "".join(out).encode()


def txt_with_bad_rows(rows: int = 220) -> bytes:
    """Blank and whitespace lines, undecodable bytes and a text over MAX_TEXT_CHARS, spread across the chunks."""
    rng = random.Random(14)
    out = []
    for i in range(rows):
        if i % 17 == 5:
            out.append(b"\n")
        elif i % 23 == 7:
            out.append(b"   \t\n")
        elif i % 29 == 11:
            out.append(b"caf\xe9 \xff\xfe broken\n")
        elif i == 101:
            out.append(b"x" * 2500 + b"\n")
        else:
            out.append(_tweet(rng, i).encode() + b"\n")
    return b"".join(out)


def s3_event(key: str, etag: str, size: int) -> dict:
    """events/s3_put.json for another object, its key URL-encoded as S3 sends it."""
    event = copy.deepcopy(json.loads((REPO / "events" / "s3_put.json").read_text()))
    obj = event["Records"][0]["s3"]["object"]
    obj.update(key=quote_plus(key, safe="/"), eTag=etag, size=size)
    obj.pop("versionId")
    return event


def serial_result(stack, monkeypatch, key: str, body: bytes) -> tuple[bytes, dict]:
    """The result and manifest of scoring `body` at `key` inline, in one call, as a small upload is scored;
    then its result, manifest and claim are removed so the machine scores the same key from nothing
    (rejected rows name the file, so the serial run must score the very same key)."""
    etag = stack.put(key, body)
    monkeypatch.setenv("INLINE_MAX_BYTES", str(len(body) + 1))
    handler = import_path("serial_score_object", REPO / "functions" / "score_object" / "app.py").handler
    handler(s3_event(key, etag, len(body)), FakeContext(function_name="tweetmood-score-object"))
    monkeypatch.setenv("INLINE_MAX_BYTES", "2048")
    outputs = [f(key, stack.settings) for f in (keys.output_key_for, keys.manifest_key_for, keys.claim_key_for)]
    result, manifest = stack.read(outputs[0]), json.loads(stack.read(outputs[1]))
    assert manifest["status"] == "complete" and stack.lambdas.calls == [], "the serial run must not touch the machine"
    stack.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in outputs]})
    return result, manifest


def start(stack, key: str, etag: str) -> str:
    """StartExecution as the router does it: named after bucket, key and ETag; the name is also the run id."""
    name = execution_name(BUCKET, key, etag, None)
    payload = {"bucket": BUCKET, "key": key, "etag": etag, "version_id": None, "run_id": name}
    stack.sfn.start_execution(stateMachineArn=machine_arn("ScoreFileStateMachine"), name=name, input=json.dumps(payload))
    return name


def chunk_calls(stack) -> list[dict]:
    return [event for function, event in stack.lambdas.calls if function == "score_chunk"]


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("incoming/big.txt", plain_txt()),
        ("incoming/big.txt.gz", gzip.compress(plain_txt())),
        ("incoming/quoted.csv", csv_with_quoted_newlines()),
        ("incoming/bad rows.txt", txt_with_bad_rows()),
    ],
    ids=["plain", "gzip", "csv-quoted-newlines", "bad-rows"],
)
def test_the_machine_scores_a_file_in_eight_or_more_chunks_exactly_as_one_serial_run(stack, monkeypatch, key, body):
    expected, serial_manifest = serial_result(stack, monkeypatch, key, body)
    etag = stack.put(key, body)

    run_id = start(stack, key, etag)
    (execution,) = stack.settle("ScoreFileStateMachine")

    assert execution["status"] == "SUCCEEDED", execution
    chunks = chunk_calls(stack)
    assert len(chunks) >= 8 and sorted(c["index"] for c in chunks) == list(range(len(chunks)))
    assert stack.read(keys.output_key_for(key, stack.settings)) == expected
    manifest = json.loads(stack.read(keys.manifest_key_for(key, stack.settings)))
    assert manifest["status"] == "complete" and manifest["source_etag"] == etag
    assert manifest["rows_read"] == manifest["rows_scored"] + manifest["rows_rejected"]
    for count in ("rows_read", "rows_scored", "rows_rejected", "label_counts", "error_counts"):
        assert manifest[count] == serial_manifest[count], count
    assert json.loads(execution["output"])["rows_read"] == manifest["rows_read"]
    assert stack.keys_below(keys.staging_prefix_for(run_id, stack.settings)) == []


def test_bad_rows_are_counted_not_dropped_across_chunk_boundaries(stack, monkeypatch):
    body = txt_with_bad_rows()
    etag = stack.put("incoming/bad.txt", body)
    start(stack, "incoming/bad.txt", etag)
    stack.settle("ScoreFileStateMachine")

    manifest = json.loads(stack.read(keys.manifest_key_for("incoming/bad.txt", stack.settings)))
    assert manifest["rows_read"] == body.count(b"\n") and manifest["rows_rejected"] >= 4 + 13 + 8
    rows = [json.loads(line) for line in stack.read(keys.output_key_for("incoming/bad.txt", stack.settings)).splitlines()]
    assert [r["line"] for r in rows] == list(range(1, body.count(b"\n") + 1))


def test_an_upload_above_the_inline_bound_is_routed_to_the_machine_and_a_duplicate_event_is_a_no_op(stack):
    body = plain_txt()
    etag = stack.put("incoming/routed.txt", body)
    event = s3_event("incoming/routed.txt", etag, len(body))
    score_object = stack.lambdas.handlers["score_object"]

    score_object(event, FakeContext(function_name="tweetmood-score-object"))
    (first,) = stack.settle("ScoreFileStateMachine")
    result = stack.read(keys.output_key_for("incoming/routed.txt", stack.settings))
    score_object(event, FakeContext(function_name="tweetmood-score-object"))
    executions = stack.settle("ScoreFileStateMachine")

    assert first["status"] == "SUCCEEDED" and [e["executionArn"] for e in executions] == [first["executionArn"]]
    assert first["name"] == execution_name(BUCKET, "incoming/routed.txt", etag, None)
    assert stack.read(keys.output_key_for("incoming/routed.txt", stack.settings)) == result


def test_a_duplicate_start_of_the_same_run_is_refused_and_changes_nothing(stack):
    body = plain_txt()
    etag = stack.put("incoming/twice.txt", body)
    start(stack, "incoming/twice.txt", etag)
    (first,) = stack.settle("ScoreFileStateMachine")
    result = stack.read(keys.output_key_for("incoming/twice.txt", stack.settings))

    with pytest.raises(stack.sfn.exceptions.ExecutionAlreadyExists):
        start(stack, "incoming/twice.txt", etag)

    assert [e["executionArn"] for e in stack.settle("ScoreFileStateMachine")] == [first["executionArn"]]
    assert stack.read(keys.output_key_for("incoming/twice.txt", stack.settings)) == result


def test_a_chunk_that_fails_ends_the_run_in_a_failed_manifest_and_no_result(stack):
    """moto reports the map as succeeded although chunk 3 failed (AWS would fail it, tolerance 0), so here it is
    the merge's parts-against-plan check that fails the run: the guard that holds on both."""
    body = plain_txt()
    etag = stack.put("incoming/doomed.txt", body)
    stack.lambdas.fail_when = lambda function, event: function == "score_chunk" and event.get("index") == 3

    run_id = start(stack, "incoming/doomed.txt", etag)
    (execution,) = stack.settle("ScoreFileStateMachine")

    assert execution["status"] == "FAILED"
    manifest = json.loads(stack.read(keys.manifest_key_for("incoming/doomed.txt", stack.settings)))
    assert manifest["status"] == "failed" and manifest["source_etag"] == etag
    assert "PartsMissing" in manifest["reason"] and "chunk 3 " in manifest["reason"]
    assert "stackTrace" not in manifest["reason"], "the reason is the error's message, not Lambda's error document"
    assert stack.keys_below(keys.output_key_for("incoming/doomed.txt", stack.settings)) == []
    assert stack.keys_below(keys.staging_prefix_for(run_id, stack.settings)) == []
    assert [f for f, _ in stack.lambdas.calls if f == "merge_run"], "FailRun runs on MergeRunFunction"


def test_a_plan_that_fails_ends_in_a_failed_manifest_too(stack):
    etag = stack.put("incoming/unplannable.txt", plain_txt())
    stack.lambdas.fail_when = lambda function, event: function == "plan_run"

    start(stack, "incoming/unplannable.txt", etag)
    (execution,) = stack.settle("ScoreFileStateMachine")

    assert execution["status"] == "FAILED"
    manifest = json.loads(stack.read(keys.manifest_key_for("incoming/unplannable.txt", stack.settings)))
    assert manifest["status"] == "failed" and "injected failure in plan_run" in manifest["reason"]
    assert stack.keys_below(keys.output_key_for("incoming/unplannable.txt", stack.settings)) == []


def test_the_backlog_machine_scores_every_listed_file_small_ones_inline_and_big_ones_on_the_score_file_machine(stack):
    small = {f"incoming/backlog/{i}.txt": f"so happy {i}\ni miss my mom\n".encode() for i in range(4)}
    big = {"incoming/backlog/big.txt": plain_txt()}
    items = [{"bucket": BUCKET, "key": k, "etag": stack.put(k, b), "size": len(b)} for k, b in {**small, **big}.items()]
    backlog_key = keys.backlog_key_for("20261202T000000Z", stack.settings)
    stack.s3.put_object(Bucket=BUCKET, Key=backlog_key, Body=json.dumps(items).encode())

    stack.sfn.start_execution(
        stateMachineArn=machine_arn("BacklogStateMachine"), input=json.dumps({"bucket": BUCKET, "backlog_key": backlog_key})
    )
    (backlog,) = stack.settle("BacklogStateMachine")
    (big_run,) = stack.settle("ScoreFileStateMachine")

    assert backlog["status"] == "SUCCEEDED" and big_run["status"] == "SUCCEEDED"
    scored = [event for function, event in stack.lambdas.calls if function == "score_object"]
    assert sorted(e["tweetmood_backlog_item"]["key"] for e in scored) == sorted(i["key"] for i in items)
    for item in items:
        manifest = json.loads(stack.read(keys.manifest_key_for(item["key"], stack.settings)))
        assert manifest["status"] == "complete" and manifest["source_etag"] == item["etag"], item["key"]
        assert manifest["rows_read"] == (len(plain_txt().splitlines()) if item["key"] in big else 2)
    assert len(chunk_calls(stack)) >= 8, "the big file went through the chunks"
