"""The scale-out projection's arithmetic and the definitions it counts transitions from."""

from __future__ import annotations

import pytest

from benchmarks.scaleout import SCORE_FILE_ASL, project, render, states_on_success_path, template_defaults, transitions

pytestmark = pytest.mark.unit

MEASURED = {"plan_s_per_gb": 10.0, "merge_s_per_gb": 2.0, "chunk_tweets_per_s": 500.0, "model_load_s": 1.0,
            "bytes_per_line": 100.0, "result_bytes_per_row": 300.0}
TEMPLATE = {"MemorySize": 1769, "ChunkRows": 50_000, "MapMaxConcurrency": 250, "ReservedConcurrency": 10,
            "InlineMaxBytes": 8 << 20}


def test_the_success_path_follows_next_until_the_end_and_skips_the_catch_states():
    states = {"A": {"Type": "Task", "Next": "B"}, "B": {"Type": "Task", "End": True},
              "Failed": {"Type": "Fail"}}
    assert states_on_success_path(states, "A") == ["A", "B"]


def test_the_score_file_machine_bills_a_few_parent_transitions_and_one_per_chunk_state():
    parent, child = transitions(SCORE_FILE_ASL)
    assert 2 <= parent <= 6 and child >= 1


def test_ten_million_lines_cost_lambda_seconds_plus_transitions():
    p = project(MEASURED, TEMPLATE, (3, 1), (2, 1))["big_file"]
    assert p["chunks"] == 200 and p["waves"] == 1 and p["chunk_s"] == pytest.approx(101.0)
    assert p["plan_s"] == pytest.approx(10.0) and p["merge_s"] == pytest.approx(6.0)
    assert p["wall_s"] == pytest.approx(10 + 101 + 6)
    lambda_usd = (10 + 200 * 101 + 6) * (1769 / 1024) * 0.0000166667 + 202 * 0.2e-6
    assert p["lambda_usd"] == pytest.approx(lambda_usd, abs=1e-4)
    assert p["transitions"] == 203 and p["stepfunctions_usd"] == pytest.approx(203 * 0.000025, abs=1e-4)
    assert p["usd_per_million"] == pytest.approx((lambda_usd + 203 * 0.000025) / 10, abs=1e-4)


def test_half_a_vcpu_halves_the_rate_and_more_chunks_than_the_map_runs_at_once_take_waves():
    p = project(MEASURED, {**TEMPLATE, "MemorySize": 885, "MapMaxConcurrency": 100}, (3, 1), (2, 1))["big_file"]
    assert p["waves"] == 2 and p["chunk_s"] == pytest.approx(50_000 / (500 * 885 / 1769) + 1.0, abs=0.1)


def test_small_files_pay_one_child_execution_each():
    s = project(MEASURED, TEMPLATE, (3, 1), (2, 2))["small_files"]
    assert s["transitions"] == 2 + 10_000 * 2 and s["per_file_s"] == pytest.approx(2.0)
    assert s["wall_s"] == pytest.approx(1000 * 2.0)


def test_the_template_defaults_are_read_from_template_yaml():
    assert template_defaults()["MemorySize"] >= 128


def test_the_report_says_whether_the_target_is_met():
    result = {"command": "x", "date": "today", "cpu": "cpu", "load_avg_1min": 1.0, "template": TEMPLATE,
              "transitions": {"score_file": (3, 1), "backlog": (2, 1)},
              "measured": {**MEASURED, "plan_s": 1.0, "plan_lines": 10, "plan_bytes": 1000, "chunk_rows": 10,
                           "chunk_s": 1.0, "chunk_wall_s": 2.0, "merge_s": 1.0, "merge_bytes": 1000},
              "workers": None, "projection": project(MEASURED, TEMPLATE, (3, 1), (2, 1))}
    text = render(result)
    assert "Target for the big file" in text and "met" in text and "$ per million tweets" in text
