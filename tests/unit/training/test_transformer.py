"""Fine-tuning tiny BERT and DistilBERT models built locally: loss falls, runs are seeded, the best epoch is kept."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("USE_TF", "0")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from conftest import LABELS, save_tokenizer, make_examples  # noqa: E402
from training import transformer as tt  # noqa: E402
from training.data import Splits  # noqa: E402
from training.transformer import (  # noqa: E402
    TransformerArgs,
    build_parser,
    class_weights,
    make_preprocess,
    parameter_groups,
    train_transformer,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def splits() -> Splits:
    return Splits(train=make_examples(96, 1), val=make_examples(24, 2), test=make_examples(24, 3), labels=LABELS)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab_size = save_tokenizer(directory)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-distilbert")
    vocab_size = save_tokenizer(directory)
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                           max_position_embeddings=64)
    transformers.DistilBertModel(config).save_pretrained(directory)
    return str(directory)


def _args(base_model: str, output_dir, **overrides) -> TransformerArgs:
    values = dict(base_model=base_model, output_dir=str(output_dir), lr=3e-3, epochs=3, batch_size=16, patience=0,
                  warmup_ratio=0.1, device="cpu", cpu_threads=1, progress=False, augment_prob=0.3)
    values.update(overrides)
    return TransformerArgs(**values)


def test_a_tiny_bert_learns_and_writes_checkpoint_metrics_and_history(tiny_bert, splits, tmp_path):
    result = train_transformer(_args(tiny_bert, tmp_path / "run", epochs=4), splits)

    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.val["macro_f1"] == max(h["val_macro_f1"] for h in result.history)
    metrics = json.loads(result.metrics_path.read_text())
    for key in ("val", "test", "test_raw"):
        assert set(metrics[key]) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
        assert metrics[key]["n"] == (24 if key != "val" else 24)
    assert metrics["epochs_run"] == 4 and metrics["device"] and metrics["train_time_s"] >= 0
    assert metrics["args"]["base_model"] == tiny_bert
    assert json.loads(result.history_path.read_text()) == result.history
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(result.checkpoint_dir)
    assert [reloaded.config.id2label[i] for i in range(6)] == LABELS
    assert transformers.AutoTokenizer.from_pretrained(result.checkpoint_dir)("i feel sad")["input_ids"]
    assert json.loads((result.checkpoint_dir / "tweetmood_training.json").read_text())["preprocess"] == "normalize"


def test_a_tiny_distilbert_without_token_type_ids_runs_end_to_end(tiny_distilbert, splits, tmp_path):
    result = train_transformer(_args(tiny_distilbert, tmp_path / "run", epochs=2, llrd=0.8,
                                     class_weights="inverse_sqrt", label_smoothing=0.1, eval_steps=4), splits)
    assert result.metrics_path.is_file() and (result.checkpoint_dir / "config.json").is_file()
    assert json.loads((result.checkpoint_dir / "config.json").read_text())["model_type"] == "distilbert"
    assert len(result.history) > 2  # evaluations every 4 steps as well as at each epoch's end


def _state_hash(model) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def test_early_stopping_stops_on_patience_and_restores_the_best_epoch(tiny_bert, splits, tmp_path, monkeypatch):
    scripted_val_f1 = [0.5, 0.7, 0.6, 0.4]
    seen: list[str] = []
    real_evaluate = tt._evaluate

    def scripted(model, token_ids, y, labels, **kw):
        report = real_evaluate(model, token_ids, y, labels, **kw)
        seen.append(_state_hash(model))
        if len(seen) <= len(scripted_val_f1):
            report["macro_f1"] = scripted_val_f1[len(seen) - 1]
        return report

    monkeypatch.setattr(tt, "_evaluate", scripted)
    result = train_transformer(_args(tiny_bert, tmp_path / "run", epochs=10, patience=2), splits)

    assert result.epochs_run == 4 and result.best_epoch == 2
    assert [h["val_macro_f1"] for h in result.history] == scripted_val_f1
    saved = transformers.AutoModelForSequenceClassification.from_pretrained(result.checkpoint_dir)
    assert _state_hash(saved) == seen[1] != seen[3]
    assert seen[4] == seen[1]  # the clean test is scored with the restored state


def test_seeded_runs_are_identical_and_another_seed_differs(tiny_bert, splits, tmp_path):
    a = train_transformer(_args(tiny_bert, tmp_path / "a", epochs=1), splits)
    b = train_transformer(_args(tiny_bert, tmp_path / "b", epochs=1), splits)
    c = train_transformer(_args(tiny_bert, tmp_path / "c", epochs=1, seed=14), splits)
    strip = [{k: v for k, v in h.items() if k != "elapsed_s"} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k != "elapsed_s"} for h in b.history]
    assert a.test == b.test and a.test_raw == b.test_raw
    assert a.history[0]["train_loss"] != c.history[0]["train_loss"]


def test_inverse_class_weights_balance_the_classes_and_keep_the_loss_scale():
    labels = [0] * 6 + [1] * 3 + [2] * 1
    inverse = class_weights(labels, 3, "inverse").numpy()
    assert inverse == pytest.approx([10 / 18, 10 / 9, 10 / 3])
    assert (inverse * [6, 3, 1]).sum() / 10 == pytest.approx(1.0)
    sqrt = class_weights(labels, 3, "inverse_sqrt").numpy()
    assert sqrt[2] / sqrt[0] == pytest.approx(6 ** 0.5)
    assert (sqrt * [6, 3, 1]).sum() / 10 == pytest.approx(1.0)
    assert class_weights(labels, 3, "none") is None
    with pytest.raises(ValueError, match="label ids \\[3\\]"):
        class_weights(labels, 4, "inverse")


def test_layerwise_decay_gives_lower_layers_smaller_learning_rates(tiny_bert):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=6)
    groups = parameter_groups(model, lr=1.0, weight_decay=0.01, llrd=0.5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rate[id(named["classifier.weight"])] == 1.0
    assert rate[id(named["bert.encoder.layer.1.output.dense.weight"])] == 0.5
    assert rate[id(named["bert.encoder.layer.0.output.dense.weight"])] == 0.25
    assert rate[id(named["bert.embeddings.word_embeddings.weight"])] == 0.125
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(named["bert.encoder.layer.0.output.dense.bias"])] == 0.0
    assert decay[id(named["bert.encoder.layer.0.output.LayerNorm.weight"])] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_stopword_preprocessing_drops_english_stop_words_after_normalizing():
    assert make_preprocess("stopwords")("I'm SO sad about it @bob https://t.co/x") == "im sad"
    assert make_preprocess("normalize")("I'm SO sad about it") == "im so sad about it"
    with pytest.raises(ValueError, match="preprocess"):
        make_preprocess("lemmas")


def test_the_command_line_has_one_option_per_argument_field():
    ns = build_parser().parse_args(["--lr", "5e-5", "--class-weights", "inverse", "--bf16", "false",
                                    "--max-train-examples", "200", "--llrd", "0.9"])
    assert (ns.lr, ns.class_weights, ns.bf16, ns.max_train_examples, ns.llrd) == (5e-5, "inverse", False, 200, 0.9)
    assert build_parser().parse_args([]).bf16 is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--class-weights", "balanced"])
