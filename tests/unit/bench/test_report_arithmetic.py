"""The benchmark's arithmetic: FLOPs per tweet for the full and the CLS-only graph, and the report it renders."""

from __future__ import annotations

import pytest

from benchmarks.run import flops_per_tweet, render

pytestmark = pytest.mark.unit

MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536}


def test_a_one_token_tweet_costs_the_same_with_or_without_the_cls_only_last_layer():
    assert flops_per_tweet(MINILM, 1, True) == pytest.approx(flops_per_tweet(MINILM, 1, False))


def test_the_cls_only_graph_saves_most_of_one_layer_on_a_mean_length_tweet():
    full, cls_only = flops_per_tweet(MINILM, 22.2), flops_per_tweet(MINILM, 22.2, True)
    one_layer = (full - flops_per_tweet({**MINILM, "num_hidden_layers": 5}, 22.2))
    assert 0.75 * one_layer < full - cls_only < one_layer
    assert flops_per_tweet(MINILM, 22.2) == pytest.approx(0.476e9, rel=0.01)  # the figure docs/benchmarks.md quoted


def _row(key: str, tps: float, size: float = 10.0) -> dict:
    return {"key": key, "label": f"({key})", "size_mb": size, "tweets_per_s_1": tps, "batch_p50_ms_1": 1.0,
            "batch_p99_ms_1": 2.0, "peak_rss_mb_1": 100.0, "cold_start_s_1": 0.3, "accuracy": 0.93}


def test_the_report_states_what_each_step_bought_from_the_rows_of_one_run():
    result = {
        "machine": {"cpu": "test cpu", "cores": 2, "flags": ["avx2"], "onnxruntime": "1", "python": "3"},
        "date": "today", "command": "make bench",
        "models": [_row("a", 10), _row("b-file", 50), _row("b", 100), _row("c", 120), _row("d-full", 240),
                   _row("d-dyn", 200, 5.0), _row("d", 300, 5.0)],
        "ratios": {"d_over_b_1thread": 3.0},
        "end_to_end": {"lines": 10, "bytes": 1e6, "blank": 1, "undecodable": 1, "threads": 1, "wall_s": 1,
                       "tweets_per_s": 8, "peak_rss_mb": 100, "rows_read": 10, "rows_scored": 8, "rows_rejected": 2,
                       "output_rows": 10, "outside_model_share": 0.1},
        "compute": {"mean_tokens": 22.2, "gflop_per_tweet": 0.41, "gflop_per_tweet_full_graph": 0.476,
                    "achieved_gflops_1thread": 120.0, "fp32_gemm_peak_gflops_1thread": 99.0,
                    "runtime_ops": {"DynamicQuantizeMatMul": 20}, "int8_gemm_peak_gops_1thread": 350.0,
                    "ceiling_tweets_per_s_1thread": 850.0},
        "lambda_curve": [{"memory_mb": 1769, "vcpu": 1.0, "tweets_per_s": 300, "seconds_per_million": 3333,
                          "usd_per_million": 0.1}],
        "prices": {"lambda_x86_usd_per_gb_s": 0.0000166667, "lambda_usd_per_million_requests": 0.2,
                   "comprehend_per_million": "$500"},
    }
    text = render(result)
    assert "Batches sorted by token count for the PyTorch pipeline (less padding) instead of file order: 2.00× (50 → 100" in text
    assert "Last layer for [CLS] only" in text and "1.25× (240 → 300 tweets/s)" in text
    assert "DynamicQuantizeMatMul ×20" in text
    assert "34% of the int8 peak" in text and "could not pass 850.0 tweets/s on one thread, 8.5× (b)" in text
    assert "instead of dynamic int8 one tweet per call" in text and "1.50× (200 → 300 tweets/s)" in text
    assert ("(b) runs the full graph at 47.6 GFLOP/s, 48% of the fp32 peak" in text
            and "would run 4.1× (b); 5× (b) needs 205 GOP/s, 59% of the int8 peak" in text)
    assert "\n\n\n" not in text.split("## What each step bought")[1].split("## End to end")[0]


def test_the_report_sets_the_shipped_model_against_one_shipped_before_and_one_not_shipped():
    before = {**_row("prev-8f880f9", 250), "version": "m-8f880f9", "source": "git:8f880f9:layers/model/model"}
    smaller = {**_row("f-3c97cdd6", 600, 17.5), "version": "m-l3-3c97cdd6", "source": "runs/l3", "accuracy": 0.92}
    result = {
        "machine": {"cpu": "test cpu", "cores": 2, "flags": [], "onnxruntime": "1", "python": "3"},
        "date": "today", "command": "make bench", "models": [_row("d", 300, 5.0), before, smaller],
        "ratios": {}, "end_to_end": {"lines": 10, "bytes": 1e6, "blank": 1, "undecodable": 1, "threads": 1, "wall_s": 1,
                                     "tweets_per_s": 8, "peak_rss_mb": 100, "rows_read": 10, "rows_scored": 8,
                                     "rows_rejected": 2, "output_rows": 10, "outside_model_share": 0.1},
        "compute": {"mean_tokens": 22.2, "gflop_per_tweet": 0.41, "gflop_per_tweet_full_graph": 0.476,
                    "achieved_gflops_1thread": 120.0, "fp32_gemm_peak_gflops_1thread": 90.0},
        "lambda_curve": [{"memory_mb": 1769, "vcpu": 1.0, "tweets_per_s": 300, "seconds_per_million": 3333,
                          "usd_per_million": 0.1}],
        "prices": {"lambda_x86_usd_per_gb_s": 1e-5, "lambda_usd_per_million_requests": 0.2, "comprehend_per_million": "x"},
    }
    text = render(result)
    assert "- (d) over m-8f880f9 (git:8f880f9:layers/model/model): 1.200× at 1T (test acc. 0.9300 against 0.9300)." in text
    assert "- m-l3-3c97cdd6 (runs/l3): 2.00× at 1T (d)'s tweets/s, 17.5 MB (test acc. 0.9200 against 0.9300)." in text
