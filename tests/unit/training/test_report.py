"""Per-model metrics.json and confusion matrix through the serving Classifier, and the docs/training.md table."""

from __future__ import annotations

import json

import pytest

from training.export import DEFAULT_QUANTIZATION, write_model_card
from training.report import REFERENCE_ROWS, evaluate_model_dir, results_table, table_row, write_training_doc

pytestmark = pytest.mark.unit


def test_evaluating_a_serving_directory_writes_metrics_and_a_confusion_matrix_png(tiny_serving, tiny_splits):
    serving = tiny_serving(DEFAULT_QUANTIZATION)
    raw = tiny_splits.test[:12]
    metrics = evaluate_model_dir(serving, tiny_splits.test, raw, train_time_s=12.34, device="cpu (test)")
    on_disk = json.loads((serving / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0
    assert set(metrics["per_class"]) == set(tiny_splits.labels)
    assert sum(map(sum, metrics["confusion_matrix"])) == len(tiny_splits.test)
    assert metrics["raw_test"]["n"] == 12
    assert metrics["train_time_s"] == 12.3 and metrics["device"] == "cpu (test)"
    assert metrics["model_bytes"] == (serving / "model.onnx").stat().st_size
    assert metrics["cpu_tweets_per_s"] > 0 and metrics["cpu_benchmark"]["threads"] == 1
    assert (serving / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_keeps_what_the_trainer_already_recorded(tiny_serving, tiny_splits):
    serving = tiny_serving("fp32")
    (serving / "metrics.json").write_text(json.dumps({"parity": {"agreement": 1.0}, "history": [1, 2]}))
    metrics = evaluate_model_dir(serving, tiny_splits.test, speed=False)
    assert metrics["parity"] == {"agreement": 1.0} and metrics["history"] == [1, 2]
    assert "cpu_tweets_per_s" not in metrics


def test_tweets_with_two_emotions_count_as_hits_when_the_top_labels_are_theirs(tiny_serving, tiny_splits):
    from dataclasses import replace

    from training.report import predict_scores
    from tweetmood.classifier import Classifier

    serving = tiny_serving("fp32")
    texts = [e.text for e in tiny_splits.test[:8]]
    ranked = (-predict_scores(Classifier.from_dir(serving), texts)).argsort(1)

    def spread(labels):  # a soft target over `labels` (indices), as the E-c reader writes for a mixed row
        return tuple(0.5 if i in labels else 0.0 for i in range(len(tiny_splits.labels)))

    theirs = [replace(tiny_splits.test[i], text=t, targets=spread(ranked[i, :2])) for i, t in enumerate(texts[:4])]
    others = [replace(tiny_splits.test[i], text=t, targets=spread(ranked[i, 2:4])) for i, t in enumerate(texts[4:], 4)]
    metrics = evaluate_model_dir(serving, tiny_splits.test, speed=False, mixed_tweets=theirs + others)

    assert metrics["ec_dev_mixed"] == {"n": 8, "top1_in_labels": 0.5, "n_two": 8, "top2_are_labels": 0.5}
    card = write_model_card(serving, {}).read_text()
    assert "the top label is one of theirs for 50.00%; on the 8 with exactly two" in card


def test_the_results_table_has_our_columns_and_the_reference_rows_beside_ours():
    row = table_row("BiLSTM (ONNX)", {"test": {"accuracy": 0.9, "macro_f1": 0.85}, "test_raw": {"accuracy": 0.8},
                                      "ec_dev": {"accuracy": 0.7, "macro_f1": 0.5},
                                      "train_time_s": 125.0, "device": "cpu", "model_bytes": 2_500_000,
                                      "cpu_tweets_per_s": 4321.0})
    table = results_table([row])
    lines = table.splitlines()
    assert lines[0] == ("| Model | Accuracy | Macro-F1 | Raw-test accuracy | Real tweets (E-c dev) acc / macro-F1 "
                        "| Train time | Device | Model size | CPU tweets/s |")
    assert lines[2] == "| BiLSTM (ONNX) | 0.9000 | 0.8500 | 0.8000 | 0.7000 / 0.5000 | 2.1 min | cpu | 2.5 MB | 4321 |"
    for ref in REFERENCE_ROWS:
        assert ref["model"] in table
    assert "0.8555" in table and "0.8855" in table and "0.9005" in table and "0.8825" in table


def test_the_training_doc_says_how_to_run_and_holds_the_table(tmp_path):
    path = write_training_doc(tmp_path / "docs" / "training.md", [table_row("DNN", {"accuracy": 0.86, "macro_f1": 0.8})])
    text = path.read_text()
    assert "python -m training all" in text and "Parity gate" in text and "| DNN | 0.8600 | 0.8000 |" in text


def test_a_training_run_keeps_the_quantization_section_already_in_the_doc(tmp_path):
    path = tmp_path / "training.md"
    path.write_text("# old\n\n## Quantization\n\nmeasured by hand\n")
    text = write_training_doc(path, []).read_text()
    assert text.count("## Quantization") == 1 and "measured by hand" in text and "# old" not in text
