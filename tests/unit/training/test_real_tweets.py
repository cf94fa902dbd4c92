"""Training on real tweets: the SemEval-2018 E-c reader, soft targets for multi-label rows, the weighted loss."""

from __future__ import annotations

import json

import pytest
import torch

from training.data import (EMOTION, REAL_TWEETS, DataError, Example, Splits, add_real_tweets, load_ec,
                           resolve_real_tweets_dir, target_matrix)
from training.transformer import selection_score, soft_cross_entropy

pytestmark = pytest.mark.unit

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
HEADER = "ID\tTweet\tanger\tanticipation\tdisgust\tfear\tjoy\tlove\toptimism\tpessimism\tsadness\tsurprise\ttrust"


def ec_row(i: int, text: str, *emotions: str) -> str:
    columns = HEADER.split("\t")[2:]
    return "\t".join([f"2018-En-{i:05d}", text] + ["1" if c in emotions else "0" for c in columns])


def write_ec(path, *rows: str) -> str:
    path.write_text("\r\n".join([HEADER, *rows]) + "\r\n", encoding="utf-8")
    return path


def test_a_row_with_one_of_our_emotions_is_an_ordinary_example(tmp_path):
    [example] = load_ec(write_ec(tmp_path / "t.tsv", ec_row(1, "Best day ever 🎉", "joy", "optimism")), LABELS)
    assert (example.text, example.label, example.targets, example.source) == ("Best day ever 🎉", "joy", None, REAL_TWEETS)
    assert example.line == 2


def test_a_row_with_two_of_our_emotions_spreads_its_target_over_both(tmp_path):
    [example] = load_ec(write_ec(tmp_path / "t.tsv", ec_row(1, "so angry and sad", "anger", "sadness")), LABELS)
    assert example.targets == (0.5, 0.0, 0.0, 0.5, 0.0, 0.0)
    assert example.label == "sadness"


def test_multi_label_rows_can_be_dropped_instead(tmp_path):
    path = write_ec(tmp_path / "t.tsv", ec_row(1, "angry and sad", "anger", "sadness"), ec_row(2, "yay", "joy"))
    assert [e.text for e in load_ec(path, LABELS, multi="drop")] == ["yay"]


def test_rows_with_none_of_our_emotions_are_left_out(tmp_path):
    path = write_ec(tmp_path / "t.tsv", ec_row(1, "ugh gross", "disgust"), ec_row(2, "nothing"), ec_row(3, "eek", "fear"))
    assert [e.text for e in load_ec(path, LABELS)] == ["eek"]


def test_a_tweet_with_quotes_and_semicolons_is_read_whole(tmp_path):
    [example] = load_ec(write_ec(tmp_path / "t.tsv", ec_row(1, 'he said "no"; I cried', "sadness")), LABELS)
    assert example.text == 'he said "no"; I cried'


def test_a_file_that_is_not_e_c_is_refused_at_its_header(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("text;label\nhi;joy\n")
    with pytest.raises(DataError, match=r"t\.tsv:1: expected the E-c header"):
        load_ec(path, LABELS)


def test_a_row_with_a_stray_tab_names_its_line(tmp_path):
    path = write_ec(tmp_path / "t.tsv", ec_row(1, "fine", "joy"), ec_row(2, "a\ttab", "joy"))
    with pytest.raises(DataError, match=r"t\.tsv:3: 14 tab-separated fields"):
        load_ec(path, LABELS)


def test_a_flag_that_is_not_0_or_1_names_its_line(tmp_path):
    path = write_ec(tmp_path / "t.tsv", ec_row(1, "fine", "joy").replace("\t1\t", "\tyes\t", 1))
    with pytest.raises(DataError, match=r"t\.tsv:2: emotion columns must be 0 or 1"):
        load_ec(path, LABELS)


def test_an_empty_tweet_names_its_line(tmp_path):
    with pytest.raises(DataError, match=r"t\.tsv:2: empty tweet"):
        load_ec(write_ec(tmp_path / "t.tsv", ec_row(1, " ", "joy")), LABELS)


def test_e_c_train_joins_training_with_a_held_out_part_and_dev_is_only_evaluated(tmp_path):
    rows = [ec_row(i, f"tweet {i}", "joy" if i % 2 else "fear") for i in range(40)]
    rows.append(ec_row(99, "both", "joy", "love"))
    write_ec(tmp_path / "train.tsv", *rows)
    write_ec(tmp_path / "dev.tsv", ec_row(1, "dev one", "anger"), ec_row(2, "dev two", "anger", "fear"))
    emotion = [Example(f"clean {i}", LABELS[i % 6], i) for i in range(12)]
    splits = add_real_tweets(Splits(train=emotion, val=emotion[:6], test=emotion[:6], labels=LABELS), tmp_path,
                             val_fraction=0.25)
    held = {e.text for e in splits.extra_val["ec-val"]}
    trained = {e.text for e in splits.train if e.source == REAL_TWEETS}
    assert len(held) == 10 and not held & trained and len(held | trained) == 41
    assert [e.text for e in splits.extra_val["ec-dev"]] == ["dev one"]
    assert [e.text for e in splits.report_only["ec-dev-mixed"]] == ["dev two"]  # scored on the export, never trained on
    assert sum(e.source == EMOTION for e in splits.train) == 12


def test_the_real_tweets_option_names_what_is_missing(tmp_path):
    assert resolve_real_tweets_dir("none") is None
    with pytest.raises(DataError, match="train.tsv and dev.tsv"):
        resolve_real_tweets_dir(str(tmp_path))


def test_soft_cross_entropy_on_one_hot_targets_is_the_ordinary_loss():
    logits = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4])
    one_hot = torch.nn.functional.one_hot(labels, 6).float()
    expected = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(soft_cross_entropy(logits, one_hot), expected, atol=1e-6)


def test_soft_cross_entropy_is_lowest_when_the_model_matches_a_spread_target():
    target = torch.tensor([[0.5, 0.0, 0.0, 0.5, 0.0, 0.0]])
    matching = torch.log(torch.tensor([[0.5, 1e-6, 1e-6, 0.5, 1e-6, 1e-6]]))
    confident = torch.log(torch.tensor([[0.98, 0.004, 0.004, 0.004, 0.004, 0.004]]))
    assert soft_cross_entropy(matching, target) < soft_cross_entropy(confident, target)


def test_the_target_matrix_is_one_hot_unless_a_row_carries_its_own():
    examples = [Example("a", "joy", 1), Example("b", "anger", 2, targets=(0.5, 0, 0, 0.5, 0, 0), source=REAL_TWEETS)]
    assert target_matrix(examples, LABELS).tolist() == [[0, 1, 0, 0, 0, 0], [0.5, 0, 0, 0.5, 0, 0]]


def test_selection_averages_clean_macro_f1_with_held_out_real_tweet_accuracy_and_never_reads_dev():
    reports = {"val": {"macro_f1": 0.9, "accuracy": 0.95}, "ec-val": {"macro_f1": 0.5, "accuracy": 0.8},
               "ec-dev": {"macro_f1": 0.0, "accuracy": 0.0}}
    assert selection_score(reports) == pytest.approx(0.85)
    assert selection_score({"val": reports["val"]}) == pytest.approx(0.9)


def test_the_evaluate_command_reports_real_tweets_with_one_emotion_and_with_two(tmp_path, tiny_serving, tiny_splits,
                                                                                 capsys):
    from training.__main__ import main

    data, ec = tmp_path / "data", tmp_path / "ec"
    data.mkdir(), ec.mkdir()
    for name, examples in (("train.txt", tiny_splits.train), ("test.txt", tiny_splits.test)):
        (data / name).write_text("".join(f"{e.text};{e.label}\n" for e in examples), encoding="utf-8")
    write_ec(ec / "train.tsv", *(ec_row(i, f"so happy {i}", "joy") for i in range(10)))
    write_ec(ec / "dev.tsv", ec_row(1, "i am so sad", "sadness"), ec_row(2, "angry and scared", "anger", "fear"),
             ec_row(3, "love this, so happy", "joy", "love"))
    serving = tiny_serving("fp32")

    assert main(["evaluate", "--model", str(serving), "--data-dir", str(data), "--real-tweets-dir", str(ec)]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["ec_dev_accuracy"] in (0.0, 1.0)
    assert printed["ec_dev_mixed"]["n"] == 2 and printed["ec_dev_mixed"]["n_two"] == 2
    assert json.loads((serving / "metrics.json").read_text())["ec_dev_mixed"] == printed["ec_dev_mixed"]
