"""Calibration: ECE as defined, temperature and vector scaling fits, and a fit written where serving reads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from training.calibrate import (apply_calibration, calibrate_model_dir, calibration_report, calibration_reports,
                                expected_calibration_error, fit_temperature, fit_vector_scaling, load_labelled, main,
                                negative_log_likelihood, reliability_diagram, served_logits, single_label_rows)
from tweetmood.calibration import softmax
from tweetmood.classifier import Classifier, sha256_file

pytestmark = pytest.mark.unit

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
EC_HEADER = "ID\tTweet\tanger\tanticipation\tdisgust\tfear\tjoy\tlove\toptimism\tpessimism\tsadness\tsurprise\ttrust"
TWEETS = ["so happy today!!", "i hate mondays", "scared of the dark 😱", "wow did not see that coming",
          "miss you so much", "love you all ❤️", "@bob whatever", "this is fine"] * 3


def sampled(logits: np.ndarray, seed: int) -> np.ndarray:
    """One label per row drawn from softmax(logits): labels that `logits` describe perfectly."""
    probs, rng = softmax(logits).astype(np.float64), np.random.default_rng(seed)
    return np.array([rng.choice(len(p), p=p / p.sum()) for p in probs])


def ec_file(tmp_path: Path, rows: list[tuple[str, set[str]]]) -> Path:
    columns = EC_HEADER.split("\t")[2:]
    lines = [EC_HEADER] + [f"id{i}\t{text}\t" + "\t".join("1" if c in on else "0" for c in columns)
                           for i, (text, on) in enumerate(rows)]
    path = tmp_path / "ec.tsv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


# --- metrics ---------------------------------------------------------------------------------------------------


def test_ece_is_the_count_weighted_gap_between_accuracy_and_confidence_per_bin():
    # Bin (0.8, 0.867]: four rows at 0.85, three right -> gap 0.10; bin (0.533, 0.6]: two rows at 0.6, both right
    # -> gap 0.40. ECE = 4/6 * 0.10 + 2/6 * 0.40.
    probs = np.array([[0.85, 0.15]] * 4 + [[0.4, 0.6]] * 2)
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(4 / 6 * 0.10 + 2 / 6 * 0.40)


def test_ece_is_zero_when_every_bin_is_as_accurate_as_it_is_confident():
    probs = np.array([[0.8, 0.1, 0.1]] * 5 + [[0.2, 0.2, 0.6]] * 5)
    labels = np.array([0, 0, 0, 0, 1] + [2, 2, 2, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_a_confidence_of_exactly_one_lands_in_the_top_bin_and_counts():
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(1.0)


def test_with_soft_targets_a_row_is_as_right_as_the_target_mass_on_its_predicted_label():
    probs = np.array([[0.7, 0.3, 0.0]])
    assert expected_calibration_error(probs, np.array([[0.5, 0.5, 0.0]])) == pytest.approx(0.2)
    assert calibration_report(probs, np.array([[0.5, 0.5, 0.0]]))["accuracy"] == pytest.approx(0.5)


def test_the_report_gives_ece_nll_brier_accuracy_and_confidence():
    report = calibration_report(np.array([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 0]))
    # Bins of 0.9 (right) and 0.7 (wrong): gaps 0.1 and 0.7, one row each.
    assert report == {"n": 2, "ece": pytest.approx(0.4), "nll": pytest.approx((-np.log(0.9) - np.log(0.3)) / 2, abs=1e-4),
                      "brier": pytest.approx((0.02 + 0.98) / 2), "accuracy": 0.5, "mean_confidence": 0.8}


def test_a_single_label_row_puts_all_its_weight_on_one_label():
    targets = np.array([[0, 1, 0], [0.5, 0.5, 0], [1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    assert single_label_rows(targets).tolist() == [True, False, True, False]


def test_bad_targets_are_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="label ids must be integers in \\[0, 2\\)"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([2]))
    with pytest.raises(ValueError, match="sum to 1"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([[0.5, 0.6]]))


# --- fitting ---------------------------------------------------------------------------------------------------


def test_the_fitted_temperature_recovers_the_one_that_generated_the_labels():
    logits = np.random.default_rng(0).normal(0, 3, size=(20_000, 6))
    labels = sampled(logits / 2.5, seed=1)  # an overconfident model: its logits are 2.5x too sharp
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


def test_soft_targets_that_are_a_tempered_softmax_give_back_exactly_that_temperature():
    logits = np.random.default_rng(2).normal(0, 2, size=(500, 6))
    assert fit_temperature(logits, softmax(logits / 0.7).astype(np.float64)) == pytest.approx(0.7, abs=1e-3)


def test_the_fitted_temperature_minimizes_nll_and_keeps_every_label():
    logits = np.random.default_rng(3).normal(0, 4, size=(2_000, 6))
    labels = sampled(logits / 3, seed=4)
    t = fit_temperature(logits, labels)
    for other in (t * 0.9, t * 1.1, 1.0):
        assert negative_log_likelihood(logits / t, labels) < negative_log_likelihood(logits / other, labels)
    calibrated = apply_calibration({"method": "temperature", "temperature": t}, logits)
    assert (calibrated.argmax(axis=1) == logits.argmax(axis=1)).all()
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(softmax(logits), labels)


def test_vector_scaling_recovers_per_label_weights_and_biases():
    logits = np.random.default_rng(5).normal(0, 2, size=(30_000, 3))
    weights, biases = np.array([0.5, 1.0, 0.8]), np.array([0.4, 0.0, -0.4])
    labels = sampled(logits * weights + biases, seed=6)
    fitted_w, fitted_b = fit_vector_scaling(logits, labels, l2=0.0)
    np.testing.assert_allclose(fitted_w, weights, atol=0.05)
    np.testing.assert_allclose(fitted_b - fitted_b.mean(), biases - biases.mean(), atol=0.05)
    t = fit_temperature(logits, labels)
    assert negative_log_likelihood(logits * fitted_w + fitted_b, labels) < negative_log_likelihood(logits / t, labels)


# --- the served model ------------------------------------------------------------------------------------------


def test_calibrate_model_dir_writes_the_field_serving_reads_and_leaves_the_model_file_alone(model_dir):
    classifier = Classifier.from_dir(model_dir, threads=1)
    labels = classifier.outputs(TWEETS).argmax(axis=1)
    labels[::4] = (labels[::4] + 1) % 6  # the model right on three rows in four
    sha = sha256_file(model_dir / "model.onnx")
    report = calibrate_model_dir(model_dir, TWEETS, labels, fitted_on="tweets in a test", threads=1)
    field = json.loads((model_dir / "model.json").read_text())["calibration"]
    assert field == report["calibration"]
    assert set(field) == {"method", "temperature", "fitted_on", "n", "ece_before", "ece_after"}
    assert field["method"] == "temperature" and field["n"] == len(TWEETS) and field["fitted_on"] == "tweets in a test"
    assert report["after"]["nll"] <= report["before"]["nll"]
    served = Classifier.from_dir(model_dir, threads=1, verify=True)
    assert sha256_file(model_dir / "model.onnx") == sha
    np.testing.assert_allclose(served.predict_proba(TWEETS),
                               softmax(classifier.outputs(TWEETS) / field["temperature"]), atol=1e-5)


def test_calibrating_again_fits_the_raw_logits_not_the_calibrated_scores(model_dir):
    labels = np.arange(len(TWEETS)) % 6
    first = calibrate_model_dir(model_dir, TWEETS, labels, fitted_on="x", threads=1)["calibration"]
    again = calibrate_model_dir(model_dir, TWEETS, labels, fitted_on="x", threads=1)["calibration"]
    assert again == first
    assert (model_dir / "model.json").stat().st_mode & 0o777 == 0o644  # readable inside a Lambda layer


def test_served_logits_come_back_in_input_order_from_the_cores_sorted_batches(tiny_classifier):
    texts = [t * (i % 5 + 1) for i, t in enumerate(TWEETS)]  # varied lengths, so sorting reorders them
    np.testing.assert_allclose(served_logits(tiny_classifier, texts, batch_size=4),
                               np.concatenate([tiny_classifier.outputs([t]) for t in texts]), atol=1e-5)


def test_vector_scaling_can_be_written_and_is_served(model_dir):
    labels = np.arange(len(TWEETS)) % 6
    field = calibrate_model_dir(model_dir, TWEETS, labels, fitted_on="x", method="vector", threads=1)["calibration"]
    assert field["method"] == "vector" and len(field["weights"]) == len(field["biases"]) == 6
    assert Classifier.from_dir(model_dir, threads=1).calibration.method == "vector"


def test_the_reliability_diagram_is_a_png(tmp_path):
    logits = np.random.default_rng(7).normal(0, 3, size=(300, 6))
    labels = sampled(logits / 2, seed=8)
    path = reliability_diagram({"a": (softmax(logits), softmax(logits / 2), labels),
                                "b": (softmax(logits), softmax(logits / 2), labels)}, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- data ------------------------------------------------------------------------------------------------------


def test_ec_rows_get_soft_targets_over_the_labels_they_carry_and_rows_with_none_are_left_out(tmp_path):
    path = ec_file(tmp_path, [("happy", {"joy", "optimism"}), ("sad and mad", {"sadness", "anger"}),
                              ("meh", {"disgust"}), ("wow", {"surprise"})])
    data = load_labelled(str(path), LABELS)
    assert data.texts == ["happy", "sad and mad", "wow"] and data.dropped == 1
    np.testing.assert_allclose(data.targets, [[0, 1, 0, 0, 0, 0], [0.5, 0, 0, 0.5, 0, 0], [0, 0, 0, 0, 0, 1]])


def test_single_keeps_only_ec_rows_with_exactly_one_label(tmp_path):
    path = ec_file(tmp_path, [("happy", {"joy"}), ("sad and mad", {"sadness", "anger"}), ("scared", {"fear"})])
    data = load_labelled(f"{path}@single", LABELS)
    assert data.texts == ["happy", "scared"] and data.targets.argmax(axis=1).tolist() == [1, 4]
    assert data.targets.max(axis=1).tolist() == [1, 1] and data.dropped == 1


def test_a_fraction_range_takes_rows_in_file_order(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("".join(f"text {i};{LABELS[i % 6]}\n" for i in range(10)))
    assert load_labelled(f"{path}@0.8:1", LABELS).texts == ["text 8", "text 9"]
    # The training job's split: 10% of each label with two or more rows, rounded up to one.
    assert len(load_labelled(f"{path}@val", LABELS).texts) == 4


def test_a_bad_ec_line_is_named_by_file_and_line(tmp_path):
    path = ec_file(tmp_path, [("fine", {"joy"})])
    path.write_text(path.read_text().rstrip("\r\n") + "\r\nid9\tbroken\t1\t0\r\n")
    with pytest.raises(ValueError, match=f"{path}:3: 4 tab-separated fields, the header has 13"):
        load_labelled(str(path), LABELS)


@pytest.mark.parametrize("part", ["@2:1", "@a:b", "@0.5:0.2"])
def test_a_bad_fraction_range_says_how_to_write_one(tmp_path, part):
    path = tmp_path / "train.txt"
    path.write_text("x;joy\n")
    with pytest.raises(ValueError, match="@A:B"):
        load_labelled(f"{path}{part}", LABELS)


def test_the_command_line_prints_ece_before_and_after_and_writes_only_when_asked(model_dir, tmp_path, capsys):
    fit = tmp_path / "fit.txt"
    fit.write_text("".join(f"{t};{LABELS[i % 6]}\n" for i, t in enumerate(TWEETS)))
    report = ec_file(tmp_path, [(t, {LABELS[i % 6]}) for i, t in enumerate(TWEETS)])
    args = ["--model", str(model_dir), "--fit-data", str(fit), "--report-data", f"{report}@single", "--threads", "1"]
    assert main(args + ["--diagram", str(tmp_path / "d.png"), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert f"{report}@single" in out and "temperature" in out and "vector" in out and "ECE" in out
    assert "calibration" not in json.loads((model_dir / "model.json").read_text())
    assert set(json.loads((tmp_path / "c.json").read_text())["reports"]) == {"fit", f"{report}@single"}
    assert main(args + ["--write"]) == 0
    assert json.loads((model_dir / "model.json").read_text())["calibration"]["fitted_on"] == str(fit)


def test_the_fit_leaves_out_multi_label_rows_unless_asked_to_keep_them(model_dir, tmp_path, capsys):
    rows = [(t, {LABELS[i % 6]} if i % 3 else {LABELS[i % 6], LABELS[(i + 1) % 6]}) for i, t in enumerate(TWEETS)]
    fit = ec_file(tmp_path, rows)
    args = ["--model", str(model_dir), "--fit-data", str(fit), "--threads", "1", "--write"]
    assert main(args) == 0
    single = json.loads((model_dir / "model.json").read_text())["calibration"]
    assert single["n"] == 16 and single["fitted_on"] == f"{fit} (8 multi-label rows left out)"
    assert "fitting on the 16 of 24 fit rows that carry exactly one label" in capsys.readouterr().out
    assert main(args + ["--fit-rows", "all"]) == 0
    every = json.loads((model_dir / "model.json").read_text())["calibration"]
    assert every["n"] == 24 and every["fitted_on"] == str(fit) and every["temperature"] != single["temperature"]


def test_the_command_line_reports_a_missing_file_instead_of_a_traceback(model_dir, tmp_path, capsys):
    assert main(["--model", str(model_dir), "--fit-data", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt: file not found" in capsys.readouterr().err


def test_calibration_reports_compare_the_served_scores_with_and_without_the_stored_calibration(model_dir, tmp_path):
    labels = np.arange(len(TWEETS)) % 6
    calibrate_model_dir(model_dir, TWEETS, labels, fitted_on="x", threads=1)
    reports = calibration_reports(model_dir, {"tweets": (TWEETS, labels)}, diagram=tmp_path / "d.png", threads=1)
    classifier = Classifier.from_dir(model_dir, threads=1)
    assert reports["tweets"]["after"] == calibration_report(classifier.predict_proba(TWEETS), labels)
    assert reports["tweets"]["before"] == calibration_report(softmax(classifier.outputs(TWEETS)), labels)
    assert (tmp_path / "d.png").is_file()


def test_val_of_ec_train_is_the_part_the_training_job_holds_out(tmp_path):
    from training.data import Splits, add_real_tweets

    rows = [(f"tweet {i}", {LABELS[i % 6]} | ({"joy"} if i % 5 == 0 else set())) for i in range(40)]
    path = ec_file(tmp_path, rows).rename(tmp_path / "train.tsv")
    ec_file(tmp_path, rows[:3]).rename(tmp_path / "dev.tsv")
    held = load_labelled(f"{path}@val", LABELS)
    trained = add_real_tweets(Splits([], [], [], LABELS), tmp_path).train
    assert len(held.texts) == 4 and not set(held.texts) & {e.text for e in trained}
    assert held.targets.shape == (4, 6) and np.allclose(held.targets.sum(axis=1), 1)
