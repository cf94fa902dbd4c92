"""`tweetmood score` on local files and on s3:// (moto's server), and `tweetmood demo` end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import boto3
import orjson
import pytest

from tweetmood.keys import manifest_key_for, output_key_for
from tweetmood.manifest import OutputManifest
from tweetmood.settings import Settings
from tweetmood_cli.cli import main

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
EVENT_FILES = sorted((REPO / "events").glob("*.json"))
SETTINGS = Settings()
TIMING = ("started", "finished", "duration_s", "tweets_per_s", "model_s")


def without_timing(path: Path) -> dict:
    return {k: v for k, v in orjson.loads(path.read_bytes()).items() if k not in TIMING}


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


def folder_of_files(root: Path, n: int) -> Path:
    (root / "in" / "sub").mkdir(parents=True)
    for i in range(n):
        lines = [f"tweet {i}.{j} {'so happy' if j % 2 else 'quite sad'}" for j in range(40 + i)]
        lines[3] = ""
        where = root / "in" / ("sub" if i % 2 else "") / f"f{i}.txt"
        where.write_text("\n".join(lines), encoding="utf-8")
    (root / "in" / "notes.md").write_text("not an input")
    return root / "in"


def test_score_a_folder_with_two_workers_equals_one_worker(tmp_path, tiny_model_dir, capsys):
    folder = folder_of_files(tmp_path, 6)
    base = ["--model", str(tiny_model_dir), "--batch-size", "4", "--quiet"]
    assert main(["score", str(folder), "--workers", "1", "--output", str(tmp_path / "one"), *base]) == 0
    assert main(["score", str(folder), "--workers", "2", "--output", str(tmp_path / "two"), *base]) == 0
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert one == two and len(one) == 12 and Path("sub/f1.txt.scored.jsonl") in one
    for rel in one:
        if rel.name.endswith(".manifest.json"):
            a, b = without_timing(tmp_path / "one" / rel), without_timing(tmp_path / "two" / rel)
            assert a == {**b, "output_key": a["output_key"]} and a["rows_read"] >= 40
        else:
            assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    assert "6 inputs: 6 complete" in capsys.readouterr().out


def test_score_a_glob_scores_only_the_matching_files_beside_them(tmp_path, tiny_model_dir):
    folder = folder_of_files(tmp_path, 4)
    assert main(["score", str(folder / "**" / "f[12].txt"), "--model", str(tiny_model_dir), "--workers", "2",
                 "--quiet"]) == 0
    assert sorted(p.name for p in folder.rglob("*.scored.jsonl")) == ["f1.txt.scored.jsonl", "f2.txt.scored.jsonl"]
    # a second run over the folder leaves the results of the first alone
    assert main(["score", str(folder), "--model", str(tiny_model_dir), "--workers", "2", "--quiet"]) == 0
    assert len(list(folder.rglob("*.scored.jsonl"))) == 4


def test_a_big_file_with_two_workers_is_byte_identical_to_one_worker(tmp_path, tiny_model_dir, monkeypatch):
    source = tmp_path / "big.csv"
    rows = ["id,text"] + [f'{i},"tweet {i}\nwith a second line"' if i % 5 == 0 else f"{i},tweet {i} so glad"
                          for i in range(3000)]
    source.write_text("\n".join(rows), encoding="utf-8")
    monkeypatch.setenv("CHUNK_ROWS", "300")
    base = ["score", str(source), "--model", str(tiny_model_dir), "--batch-size", "4", "--format", "csv", "--quiet"]
    assert main([*base, "--workers", "1", "--output", str(tmp_path / "one.csv")]) == 0
    assert main([*base, "--workers", "2", "--output", str(tmp_path / "two.csv")]) == 0
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    a, b = without_timing(tmp_path / "one.csv.manifest.json"), without_timing(tmp_path / "two.csv.manifest.json")
    assert a == {**b, "output_key": a["output_key"]}
    assert not list(tmp_path.glob(".tweetmood-staging-*"))


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


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_file_of_an_unread_type_fails_with_its_reason_instead_of_a_traceback(tmp_path, tiny_model_dir, capsys,
                                                                                 workers):
    source = tmp_path / "tweets.json"
    source.write_bytes(b'[{"text": "hi"}]\n')
    assert main(["score", str(source), "--model", str(tiny_model_dir), "--workers", workers, "--quiet"]) == 1
    assert "unsupported file type; name it .txt, .csv, .tsv, .jsonl or .ndjson" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "tweets.json.scored.jsonl.manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["rows_read"] == 0


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
    key = "incoming/day one/tweets.csv"
    body = s3.get_object(Bucket="cli-bucket", Key=output_key_for(key, SETTINGS))["Body"].read()
    assert orjson.loads(body)["id"] == "5" and orjson.loads(body)["text"] == "hi, there"
    manifest = json.loads(s3.get_object(Bucket="cli-bucket", Key=manifest_key_for(key, SETTINGS))["Body"].read())
    assert manifest["status"] == "complete" and manifest["rows_read"] == manifest["rows_scored"] == 1
    assert f"s3://cli-bucket/{output_key_for(key, SETTINGS)}" in capsys.readouterr().out
    assert main(args) == 0 and "already scored" in capsys.readouterr().out


@pytest.mark.parametrize("workers", ["1", "2"])
def test_score_an_s3_prefix_with_one_or_two_workers(moto_server, aws_credentials, tiny_model_dir, workers):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"cli-prefix-{workers}"
    s3.create_bucket(Bucket=bucket)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"incoming/day/{i}.txt", Body=b"happy\nsad\n" * (i + 1))
    args = ["score", f"s3://{bucket}/incoming/day/", "--endpoint-url", moto_server, "--model", str(tiny_model_dir),
            "--workers", workers, "--quiet"]
    assert main(args) == 0
    for i in range(3):
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key_for(f"incoming/day/{i}.txt", SETTINGS))
                              ["Body"].read())
        assert manifest["status"] == "complete" and manifest["rows_read"] == 2 * (i + 1)
    assert not s3.list_objects_v2(Bucket=bucket, Prefix="scored/staging/").get("Contents")


def test_an_s3_key_outside_the_input_prefix_is_scored_below_the_output_prefix(moto_server, aws_credentials, tiny_model_dir):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="cli-bucket2")
    s3.put_object(Bucket="cli-bucket2", Key="archive/old.txt", Body=b"hello\n")
    assert main(["score", "s3://cli-bucket2/archive/old.txt", "--endpoint-url", moto_server, "--model", str(tiny_model_dir)]) == 0
    assert s3.head_object(Bucket="cli-bucket2", Key=manifest_key_for("archive/old.txt", Settings(input_prefix="")))


def test_the_demo_scores_every_sample_through_the_handler(tmp_path, monkeypatch, capsys):
    from tweetmood_cli import localstack

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
    from tweetmood.storage import S3Storage

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
    summary = handle_s3_event(event, storage=S3Storage(s3), settings=Settings(), classifier=tiny_classifier,
                              remaining_ms=lambda: 600_000)
    assert summary["failed"] == []
    assert len(summary["scored"]) + len(summary["skipped"]) == len(records)
    assert all(s["reason"] for s in summary["skipped"])


def test_an_unreachable_endpoint_is_reported_without_a_traceback(aws_credentials, tiny_model_dir, capsys):
    from tweetmood_cli.localstack import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["score", "s3://b/incoming/x.txt", "--endpoint-url", url, "--model", str(tiny_model_dir)]
    assert main(args) == 2
    assert "Could not connect" in capsys.readouterr().err
