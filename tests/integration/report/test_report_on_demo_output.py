"""Every shared query run by DuckDB on the demo's output, checked against the demo's manifests, and
`tweetmood report` on that output from a folder and from s3:// through --endpoint-url."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import boto3
import pytest

from tweetmood_cli.cli import main
from tweetmood.service import score_file
from tweetmood.settings import Settings
from tweetmood_cli.report import DEFAULT_LOW_CONFIDENCE, find_local, open_database, query_names, run_query

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scored(demo_output, tmp_path_factory, tiny_classifier) -> Path:
    """The demo's scored/ folder plus one failed manifest (a CSV without a text column), so every query has rows."""
    folder = shutil.copytree(demo_output / "scored", tmp_path_factory.mktemp("scored") / "scored")
    broken = folder.parent / "broken.csv"
    broken.write_text("author,date\nann,today\n", encoding="utf-8")
    assert not score_file(broken, folder / "broken.csv.jsonl", classifier=tiny_classifier, settings=Settings()).complete
    return folder


def _manifests(folder: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.rglob("*.manifest.json"))]


def _sum(manifests: list[dict], field: str) -> Counter:
    total: Counter = Counter()
    for m in manifests:
        total.update({k: v for k, v in m[field].items() if v})
    return total


def test_every_shared_query_agrees_with_the_manifests_on_the_demo_output(scored):
    con = open_database(find_local(scored))
    manifests = _manifests(scored)
    done = [m for m in manifests if m["status"] == "complete"]
    failed = [m for m in manifests if m["status"] == "failed"]
    assert len(done) == 5 and len(failed) == 1
    by_file = {m["output_key"]: m for m in done}

    def of(path: str) -> dict:
        (key,) = [k for k in by_file if path.endswith("/" + k)]
        return by_file[key]

    rows = {name: run_query(con, name) for name in query_names()}
    checked = set()

    (totals,) = rows["totals"]
    assert (totals["files"], totals["rows_read"], totals["rows_scored"], totals["rows_rejected"]) == (
        len(done), *(sum(m[k] for m in done) for k in ("rows_read", "rows_scored", "rows_rejected")),
    )
    assert totals["rows_read"] == totals["rows_scored"] + totals["rows_rejected"] > 0
    checked.add("totals")

    assert {r["label"]: r["rows_scored"] for r in rows["label_distribution"]} == _sum(done, "label_counts")
    assert round(sum(r["share_pct"] for r in rows["label_distribution"])) == 100
    checked.add("label_distribution")

    per_file: dict[str, Counter] = {}
    for r in rows["label_distribution_per_file"]:
        per_file.setdefault(r["file"], Counter())[r["label"]] = r["rows_scored"]
    assert {of(f)["output_key"]: c for f, c in per_file.items()} == {k: _sum([m], "label_counts") for k, m in by_file.items()}
    checked.add("label_distribution_per_file")

    for r in rows["rows_per_file"]:
        m = of(r["file"])
        assert (r["rows_read"], r["rows_scored"], r["rows_rejected"]) == (m["rows_read"], m["rows_scored"], m["rows_rejected"])
    assert len(rows["rows_per_file"]) == len(done)
    checked.add("rows_per_file")

    assert sum(r["files"] for r in rows["rows_per_day"]) == len(done)
    assert sum(r["rows_read"] for r in rows["rows_per_day"]) == totals["rows_read"]
    assert {r["day"] for r in rows["rows_per_day"]} == {m["started"][:10] for m in done}
    checked.add("rows_per_day")

    over_time = rows["files_over_time"]
    assert [r["source_key"] for r in over_time] == [m["source_key"] for m in sorted(done, key=lambda m: (m["finished"], m["source_key"]))]
    assert (over_time[-1]["rows_scored_so_far"], over_time[-1]["rows_rejected_so_far"]) == (totals["rows_scored"], totals["rows_rejected"])
    checked.add("files_over_time")

    low = rows["low_confidence_rows"]
    assert len(low) == totals["rows_low_confidence"] and all(r["score"] < DEFAULT_LOW_CONFIDENCE for r in low)
    assert [r["score"] for r in low] == sorted(r["score"] for r in low)
    checked.add("low_confidence_rows")

    histogram: Counter = Counter()
    for r in rows["confidence_histogram"]:
        assert 0 <= r["bin_start"] <= 0.95
        histogram[r["label"]] += r["rows_scored"]
    assert histogram == _sum(done, "label_counts")
    checked.add("confidence_histogram")

    assert {r["error"]: r["rows_rejected"] for r in rows["rejected_rows_by_error"]} == _sum(done, "error_counts")
    assert all(r["example"] for r in rows["rejected_rows_by_error"])
    checked.add("rejected_rows_by_error")

    models: Counter = Counter()
    for m in done:
        models[m["model_version"]] += m["rows_scored"]
    assert {r["model"]: r["rows_scored"] for r in rows["models"]} == models
    checked.add("models")

    assert [(r["source_key"], r["reason"], r["retryable"]) for r in rows["failed_files"]] == [
        (m["source_key"], m["reason"], m["retryable"]) for m in failed
    ]
    checked.add("failed_files")

    assert checked == set(query_names()), "a new shared query needs its check against the manifests here"


def test_the_report_on_the_demo_output_prints_the_manifests_sums(demo_output, capsys):
    done = [m for m in _manifests(demo_output / "scored") if m["status"] == "complete"]
    read, ok, bad = (sum(m[k] for m in done) for k in ("rows_read", "rows_scored", "rows_rejected"))
    assert main(["report", f"{demo_output / 'scored'}/"]) == 0
    out = capsys.readouterr().out
    assert f"rows read {read} = scored {ok} + rejected {bad} (equal to the sums of their {len(done)} complete manifests)" in out


def test_the_report_reads_an_s3_prefix_through_the_endpoint_url(demo_output, moto_server, aws_credentials, capsys):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="report-bucket")
    for path in (demo_output / "scored").rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "report-bucket", "scored/" + path.relative_to(demo_output / "scored").as_posix())
    s3.put_object(Bucket="report-bucket", Key="incoming/not-a-result.txt", Body=b"hello\n")
    assert main(["report", f"{demo_output / 'scored'}/"]) == 0
    local = capsys.readouterr().out
    assert main(["report", "s3://report-bucket/scored/", "--endpoint-url", moto_server]) == 0
    remote = capsys.readouterr().out
    # The same files, counts and check line; only the paths differ (s3:// URIs).
    assert remote.splitlines()[1:3] == local.splitlines()[1:3]
    assert "files: 5 result files, 5 manifests (5 complete, 0 failed)" in remote and "equal to the sums" in remote


def test_a_missing_bucket_is_an_error_that_names_it(moto_server, aws_credentials, capsys):
    assert main(["report", "s3://no-such-bucket/scored/", "--endpoint-url", moto_server]) == 2
    assert "s3://no-such-bucket/scored/" in capsys.readouterr().err
