"""`tweetmood score` on local files and on s3:// (moto's server), and `tweetmood demo` end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import boto3
import orjson
import pytest

from tweetmood.cli import main
from tweetmood.manifest import OutputManifest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
EVENT_FILES = sorted((REPO / "events").glob("*.json"))


def test_score_a_local_file_beside_the_input(tmp_path, tiny_model_dir, capsys):
    source = tmp_path / "tweets.txt"
    source.write_bytes(b"Loving this weather \xe2\x98\x80\n\nugh, traffic again @city\n")
    assert main(["score", str(source), "--model", str(tiny_model_dir), "--batch-size", "2"]) == 0
    rows = [orjson.loads(x) for x in (tmp_path / "tweets.txt.scored.jsonl").read_bytes().splitlines()]
    manifest = OutputManifest.from_json((tmp_path / "tweets.txt.scored.jsonl.manifest.json").read_bytes())
    assert [r["line"] for r in rows] == [1, 2, 3] and rows[1]["error"] == "empty_text"
    assert manifest.rows_read == manifest.rows_scored + manifest.rows_rejected == 3
    out = capsys.readouterr().out
    assert "complete" in out and "scored 2, rejected 1" in out and "tweets.txt.scored.jsonl" in out


def test_score_to_csv_at_a_chosen_path(tmp_path, tiny_model_dir):
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(gzip.compress(b'{"id": 1, "text": "wow"}\n'))
    output = tmp_path / "results" / "out.csv"
    assert main(["score", str(source), "--model", str(tiny_model_dir), "--format", "csv", "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8").splitlines()[0].startswith("line,id,text,label,score,score_sadness")


def test_a_failed_file_exits_non_zero_with_its_reason(tmp_path, tiny_model_dir, capsys):
    source = tmp_path / "broken.csv"
    source.write_bytes(b"author,date\nann,today\n")
    assert main(["score", str(source), "--model", str(tiny_model_dir)]) == 1
    assert "no text column" in capsys.readouterr().out
    assert not (tmp_path / "broken.csv.scored.jsonl").exists()


def test_a_missing_model_exits_with_a_hint(tmp_path, capsys):
    source = tmp_path / "t.txt"
    source.write_text("hi\n")
    assert main(["score", str(source), "--model", str(tmp_path / "no-model")]) == 2
    assert "tiny-model" in capsys.readouterr().err


def test_score_an_s3_object_through_a_local_endpoint(moto_server, aws_credentials, tiny_model_dir, capsys):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="cli-bucket")
    s3.put_object(Bucket="cli-bucket", Key="incoming/day one/tweets.csv", Body=b"text,id\n\"hi, there\",5\n")
    args = ["score", "s3://cli-bucket/incoming/day one/tweets.csv", "--endpoint-url", moto_server, "--model", str(tiny_model_dir)]
    assert main(args) == 0
    body = s3.get_object(Bucket="cli-bucket", Key="scored/day one/tweets.csv.jsonl")["Body"].read()
    assert orjson.loads(body)["id"] == "5" and orjson.loads(body)["text"] == "hi, there"
    manifest = json.loads(s3.get_object(Bucket="cli-bucket", Key="scored/day one/tweets.csv.jsonl.manifest.json")["Body"].read())
    assert manifest["status"] == "complete" and manifest["rows_read"] == manifest["rows_scored"] == 1
    assert "s3://cli-bucket/scored/day one/tweets.csv.jsonl" in capsys.readouterr().out
    assert main(args) == 0 and "already scored" in capsys.readouterr().out


def test_an_s3_key_outside_the_input_prefix_is_scored_below_the_output_prefix(moto_server, aws_credentials, tiny_model_dir):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="cli-bucket2")
    s3.put_object(Bucket="cli-bucket2", Key="archive/old.txt", Body=b"hello\n")
    assert main(["score", "s3://cli-bucket2/archive/old.txt", "--endpoint-url", moto_server, "--model", str(tiny_model_dir)]) == 0
    assert s3.head_object(Bucket="cli-bucket2", Key="scored/archive/old.txt.jsonl.manifest.json")


def test_the_demo_scores_every_sample_through_the_handler(tmp_path, monkeypatch, capsys):
    from tweetmood import localstack

    monkeypatch.setattr(localstack, "SHIPPED_MODEL", tmp_path / "no-shipped-model")  # always the tiny model
    assert localstack.run_demo(out_dir=tmp_path / "demo") == 0
    out = capsys.readouterr().out
    assert "tiny untrained test model" in out and "FAILED" not in out
    manifests = [OutputManifest.from_json(p.read_bytes()) for p in (tmp_path / "demo").rglob("*.manifest.json")]
    assert len(manifests) == len(localstack.sample_uploads()) >= 5
    assert all(m.complete and m.rows_read == m.rows_scored + m.rows_rejected for m in manifests)
    assert {e for m in manifests for e in m.error_counts} >= {"empty_text", "invalid_utf8", "malformed_json", "malformed_csv"}
    assert any("Café reviews" in m.source_key for m in manifests) and any(m.source_key.endswith(".gz") for m in manifests)


@pytest.mark.skipif(not EVENT_FILES, reason="events/ holds no event files yet")
@pytest.mark.parametrize("path", EVENT_FILES, ids=[p.stem for p in EVENT_FILES])
def test_every_shared_s3_event_is_scored_or_skipped_with_a_reason(path, load_event, s3, tiny_classifier):
    from urllib.parse import unquote_plus

    from tweetmood.service import handle_s3_event
    from tweetmood.settings import Settings

    event = load_event(path.stem)
    records = [r for r in event.get("Records", []) if "s3" in r]
    if not records:
        pytest.skip(f"{path.name} is not an S3 notification")
    for record in records:
        bucket = record["s3"]["bucket"]["name"]
        if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket=bucket)
        key = unquote_plus(record["s3"]["object"]["key"])
        body = b"text\nhello world\n"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if key.endswith(".gz") else body)
    summary = handle_s3_event(event, s3=s3, settings=Settings(), classifier=tiny_classifier, remaining_ms=lambda: 600_000)
    assert summary["failed"] == []
    assert len(summary["scored"]) + len(summary["skipped"]) == len(records)
    assert all(s["reason"] for s in summary["skipped"])


def test_an_unreachable_endpoint_is_reported_without_a_traceback(aws_credentials, tiny_model_dir, capsys):
    from tweetmood.localstack import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["score", "s3://b/incoming/x.txt", "--endpoint-url", url, "--model", str(tiny_model_dir)]
    assert main(args) == 2
    assert "Could not connect" in capsys.readouterr().err
