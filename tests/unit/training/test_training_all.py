"""`python -m training all` runs the whole job end to end on a tiny data set with a tiny base model."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def data(tmp_path, tiny_splits):
    """The tiny splits written as a data directory (`text;label` lines), as `--data-dir` reads it."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name, examples in (("train.txt", tiny_splits.train), ("test.txt", tiny_splits.test)):
        (folder / name).write_text("".join(f"{e.text};{e.label}\n" for e in examples), encoding="utf-8")
    return folder


def test_one_command_trains_all_three_models_gates_and_reports(data, tmp_path, tiny_splits, tiny_checkpoint):
    from training.__main__ import main

    out, docs = tmp_path / "run", tmp_path / "training.md"

    code = main(["all", "--data-dir", str(data), "--output-dir", str(out), "--docs", str(docs),
                 "--base-model", str(tiny_checkpoint), "--epochs", "2", "--lr", "1e-3", "--batch-size", "16",
                 "--progress", "false"])

    assert code == 0
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 4 and all(r["accuracy"] is not None for r in rows)
    int8 = out / "serving-int8"
    meta = json.loads((int8 / "model.json").read_text())
    assert meta["labels"] == tiny_splits.labels and meta["quantization"] == "int8-static-fused" and meta["execution"] == "batched"
    assert json.loads((int8 / "metrics.json").read_text())["parity"]["passed"]
    assert "BiLSTM" in docs.read_text()


def test_one_command_can_train_the_teacher_first_and_distil_it_into_the_student(data, tmp_path, tiny_checkpoint):
    from training.__main__ import main

    out = tmp_path / "run"

    code = main(["all", "--data-dir", str(data), "--output-dir", str(out), "--docs", str(tmp_path / "training.md"),
                 "--skip-baselines", "--quantization", "fp32", "--teacher-base", str(tiny_checkpoint),
                 "--teacher-args", "--epochs 1 --lr 1e-3 --batch-size 16 --progress false",
                 "--base-model", str(tiny_checkpoint), "--epochs", "2", "--lr", "1e-3", "--batch-size", "16",
                 "--progress", "false"])

    assert code == 0
    teacher = json.loads((out / "teacher" / "metrics.json").read_text())
    assert teacher["args"]["base_model"] == str(tiny_checkpoint) and teacher["test"]["accuracy"] is not None
    student = json.loads((out / "transformer" / "metrics.json").read_text())
    assert student["args"]["teachers"] == str(out / "teacher" / "checkpoint")


def test_one_command_can_make_the_student_a_soup_of_members_taught_through_the_int8_rounding_and_chosen_as_served(
        data, tmp_path, tiny_checkpoint):
    from training.__main__ import main

    out = tmp_path / "run"

    code = main(["all", "--data-dir", str(data), "--output-dir", str(out), "--docs", str(tmp_path / "training.md"),
                 "--skip-baselines", "--quantization", "fp32", "--base-model", str(tiny_checkpoint), "--epochs", "1",
                 "--lr", "1e-3", "--batch-size", "16", "--progress", "false",
                 "--member", "--label-smoothing 0.0", "--member", "--label-smoothing 0.1",
                 "--member-qat", "--lr 1e-4"])

    assert code == 0
    members = [json.loads((out / "members" / m / "metrics.json").read_text()) for m in ("m1", "m2")]
    assert [m["args"]["label_smoothing"] for m in members] == [0.0, 0.1]
    qat = [json.loads((out / "members" / f"{m}-qat" / "metrics.json").read_text())["args"] for m in ("m1", "m2")]
    assert [a["base_model"] for a in qat] == [str(out / "members" / m / "checkpoint") for m in ("m1", "m2")]
    assert all(a["fake_quant"] and a["teachers"] == a["base_model"] and a["distill_alpha"] == 1.0 and a["lr"] == 1e-4
               for a in qat)
    soup = json.loads((out / "transformer" / "metrics.json").read_text())
    assert soup["model"] == "transformer-soup" and set(soup["soup_members"]) <= {"m1-qat", "m2-qat"}
    card = (out / "serving-int8" / "README.md").read_text()
    assert "- model soup: the weight average of " in card and "through the served int8 rounding" in card
    assert "chosen as served" in card and soup["served_selection"]["passed"]  # picked through the parity gate
    assert f"- base model: {tiny_checkpoint}" in card  # the pretrained encoder, not a member's checkpoint


def test_a_trained_teacher_joins_the_teachers_already_given():
    from training.__main__ import with_teacher

    assert with_teacher(["--lr", "1e-4"], "t/ckpt") == ["--lr", "1e-4", "--teachers", "t/ckpt"]
    assert with_teacher(["--teachers", "a", "--lr", "1"], "t/ckpt") == ["--teachers", "a,t/ckpt", "--lr", "1"]
    assert with_teacher(["--teachers=a"], "t/ckpt") == ["--teachers=a,t/ckpt"]


def test_quantizations_can_be_compared_on_held_out_training_data_instead_of_test(data, tmp_path, tiny_checkpoint,
                                                                                 capsys):
    from training.__main__ import main


    code = main(["compare-quantizations", "--data-dir", str(data), "--output-dir", str(tmp_path), "--checkpoint",
                 str(tiny_checkpoint), "--on", "validation", "--n", "40", "--methods", "int8-static-fused",
                 "int8-dynamic-embeddings"])

    assert code == 0
    rows = json.loads((tmp_path / "compare" / "quantizations-validation.json").read_text())
    assert [r["quantization"] for r in rows] == ["int8-static-fused", "int8-dynamic-embeddings"]
    assert all(0 <= r["agreement"] <= 1 for r in rows)
    assert not (tmp_path / "compare" / "quantizations.json").exists()
