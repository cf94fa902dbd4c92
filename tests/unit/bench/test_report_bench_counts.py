"""The report benchmark's file and its two contenders agree with the file's manifest (small size, in process)."""

from __future__ import annotations

import json

import pytest

from benchmarks.report_bench import _child_report, _child_script, write_result_file

pytestmark = pytest.mark.unit


def test_the_bench_file_the_report_and_the_plain_script_agree_on_every_count(tmp_path):
    path = tmp_path / "results.jsonl"
    manifest = write_result_file(path, 2_000)
    assert manifest == json.loads((tmp_path / "results.jsonl.manifest.json").read_text())
    assert manifest["rows_read"] == manifest["rows_scored"] + manifest["rows_rejected"] == 2_000
    assert sum(manifest["label_counts"].values()) == manifest["rows_scored"] and 0 < manifest["rows_rejected"] < 200
    report, script = _child_report(str(path)), _child_script(str(path))
    assert report["match"]
    assert (report["totals"]["rows_scored"], report["totals"]["rows_rejected"]) == (manifest["rows_scored"], manifest["rows_rejected"])
    assert (script["rows_scored"], script["rows_rejected"]) == (manifest["rows_scored"], manifest["rows_rejected"])
