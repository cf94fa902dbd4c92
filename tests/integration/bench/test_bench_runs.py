"""`make bench` runs end to end on a tiny input and writes its report (the measurements are not tested)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "emotion"


def test_the_benchmark_writes_its_report_chart_and_json_on_a_tiny_input(tmp_path):
    from benchmarks.run import main

    if not (DATA / "test.txt").is_file():
        pytest.skip(f"{DATA} is absent: the benchmark reads the emotion test file")
    shipped = Path(__file__).resolve().parents[3] / "layers" / "model" / "model"
    assert main(["--quick", "--limit", "16", "--e2e-lines", "300", "--threads", "1", "--previous", str(shipped),
                 "--also", str(shipped),
                 "--docs", str(tmp_path), "--data-dir", str(DATA)]) == 0
    result = json.loads((tmp_path / "benchmarks.json").read_text())
    [before] = [row for row in result["models"] if row["key"].startswith("prev-")]
    [other] = [row for row in result["models"] if row["key"].startswith("f-")]
    for row in (before, other):
        assert row["tweets_per_s_1"] > 0 and f"d_over_{row['key'].replace('-', '_')}_1thread" in result["ratios"]
    e2e = result["end_to_end"]
    assert e2e["rows_read"] == e2e["rows_scored"] + e2e["rows_rejected"] == e2e["output_rows"] == 300
    assert 0 < e2e["model_s"] <= e2e["duration_s"] and 0 <= e2e["outside_model_share"] < 1
    assert 0 < e2e["peak_rss_mb"] < 1000
    assert (tmp_path / "benchmarks.png").stat().st_size > 0
    assert "End to end" in (tmp_path / "benchmarks.md").read_text()
    scaleout = result["scaleout"]
    assert scaleout["measured"]["plan_lines"] == 300 and scaleout["measured"]["chunk_rows"] == 300
    assert scaleout["projection"]["big_file"]["chunks"] == 200  # 10M lines at the template's 50,000 rows a chunk
    assert "Scale-out: plan, chunks, merge" in (tmp_path / "benchmarks.md").read_text()
