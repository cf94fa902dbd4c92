"""Export, quantization, serving directory and parity gate on a tiny BERT built locally."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from training.export import (DEFAULT_QUANTIZATION, ParityError, _graph_feeds, _quantize_embeddings, batch_independence,
                             check_parity, op_counts, plain_export, quantize, run_graph, serving_logits, torch_logits)
from tweetmood.classifier import Classifier, sha256_file

from conftest import LABELS, build_tiny_checkpoint

pytestmark = pytest.mark.unit

RAW_TWEETS = ["I'm SO happy today!!! 😀 https://t.co/x", "@sam why am i always this lonely...", "furious. again.",
              "#love this sweet day", "scared scared scared", "wow, shocked!"]


def _weight_matmuls(path) -> int:
    graph = onnx.load(str(path)).graph
    weights = {i.name for i in graph.initializer}
    return sum(1 for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights)


def test_the_export_has_dynamic_batch_and_sequence_axes(tiny_export):
    work, fp32 = tiny_export
    for graph in (plain_export(work), fp32):
        for tensor in onnx.load(str(graph)).graph.input:
            dims = tensor.type.tensor_type.shape.dim
            assert [bool(d.dim_param) for d in dims] == [True, True], tensor.name


def test_the_optimized_graph_fuses_attention_and_layer_norm_and_matches_the_export(tiny_export):
    work, fp32 = tiny_export
    ops = op_counts(fp32)
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] >= 2
    assert json.loads((work / "export.json").read_text())["optimized_max_abs_diff"] <= 1e-4


def test_static_int8_quantizes_every_weight_matmul(tiny_export, tiny_serving):
    work, _ = tiny_export
    n_weight_matmuls = _weight_matmuls(plain_export(work))
    graph = onnx.load(str(tiny_serving("int8-static") / "model.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    quantized = [n for n in graph.node if n.op_type == "MatMul"
                 and producers.get(n.input[1]) is not None and producers[n.input[1]].op_type == "DequantizeLinear"]
    assert n_weight_matmuls == 12  # 2 layers x (q, k, v, attention out, ffn in, ffn out)
    assert len(quantized) >= n_weight_matmuls


def test_int8_embedding_rows_are_gathered_and_scaled_row_by_row(tiny_export, tiny_splits, tmp_path):
    work, _ = tiny_export
    out = tmp_path / "embeddings.onnx"
    shutil.copyfile(plain_export(work), out)
    _quantize_embeddings(out, min_rows=1)  # the tiny vocabulary is under the 1024-row threshold
    tables = [i for i in onnx.load(str(out)).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert {t.name for t in tables} >= {"bert.embeddings.word_embeddings.weight_q"}
    feeds = _graph_feeds(out, work / "exported" / "tokenizer.json", [e.text for e in tiny_splits.test], 64)
    np.testing.assert_allclose(run_graph(out, feeds), run_graph(plain_export(work), feeds), atol=0.05)


def test_dynamic_int8_turns_every_weight_matmul_into_matmul_integer(tiny_export, tmp_path):
    work, _ = tiny_export
    out = quantize(plain_export(work), tmp_path / "dynamic.onnx", "int8-dynamic")
    assert op_counts(out)["MatMulInteger"] >= _weight_matmuls(plain_export(work))  # + the pooler and head Gemms


def test_calibrated_int8_fixes_every_activation_scale_and_keeps_the_fused_int8_kernels(tiny_export, tiny_serving):
    work, _ = tiny_export
    serving = tiny_serving("int8-static-fused")
    ops = op_counts(serving / "model.onnx")
    assert ops["DynamicQuantizeLinear"] == 0 and ops["MatMulInteger"] == 0 and ops["QuantizeLinear"] > 0
    assert ops["MatMulIntegerToFloat"] >= _weight_matmuls(plain_export(work))
    assert json.loads((serving / "model.json").read_text())["execution"] == "batched"


def test_calibrated_int8_refuses_to_run_without_calibration_texts(tiny_export, tmp_path):
    work, _ = tiny_export
    with pytest.raises(ValueError, match="needs calibration_texts"):
        quantize(plain_export(work), tmp_path / "static.onnx", "int8-static-fused")


def test_the_serving_directory_follows_the_model_directory_contract(tiny_serving):
    serving = tiny_serving(DEFAULT_QUANTIZATION)
    meta = json.loads((serving / "model.json").read_text())
    assert {p.name for p in serving.iterdir()} >= {"model.onnx", "model.json", "tokenizer.json", "README.md"}
    assert meta["sha256"] == sha256_file(serving / "model.onnx")
    assert meta["version"] == f"tiny-bert-{meta['sha256'][:8]}"
    assert meta["labels"] == LABELS and meta["max_length"] == 64
    assert meta["encoder"] == {"type": "wordpiece", "tokenizer_file": "tokenizer.json"}
    assert meta["output"] == {"name": "logits", "kind": "logits"}
    assert meta["normalization"] == "tweet-v1" and meta["quantization"] == DEFAULT_QUANTIZATION
    assert meta["created"].endswith("Z") and meta["base_model"]
    tokenizer = json.loads((serving / "tokenizer.json").read_text())
    assert tokenizer["truncation"]["max_length"] == 64 and tokenizer["padding"]["pad_token"] == "[PAD]"


@pytest.mark.parametrize("quantization, atol", [("fp32", 1e-4), ("int8-dynamic-embeddings", 0.05), (DEFAULT_QUANTIZATION, 0.05)])
def test_the_serving_core_scores_like_pytorch(tiny_checkpoint, tiny_serving, tiny_splits, quantization, atol):
    texts = [e.text for e in tiny_splits.test[:48]] + RAW_TWEETS
    classifier = Classifier.from_dir(tiny_serving(quantization), threads=1)
    logits = torch_logits(tiny_checkpoint, texts, 64)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(classifier.predict_proba(texts), expected, atol=atol)


@pytest.mark.parametrize("quantization", [DEFAULT_QUANTIZATION, "int8-dynamic-embeddings"])
def test_a_servable_int8_model_scores_a_tweet_the_same_alone_or_in_any_batch(tiny_serving, tiny_splits, quantization):
    classifier = Classifier.from_dir(tiny_serving(quantization), threads=1)
    texts = [e.text for e in tiny_splits.test] + RAW_TWEETS
    assert batch_independence(classifier, texts, batch_size=64) <= 1e-4


def test_the_parity_gate_scores_the_model_the_way_serving_runs_it(tiny_serving, tiny_splits):
    """A per-row model is gated on one-tweet calls, not on batches it is never served in."""
    classifier = Classifier.from_dir(tiny_serving("int8-dynamic-embeddings"), threads=1)
    assert classifier.per_row
    texts = [e.text for e in tiny_splits.test]
    one_by_one = np.concatenate([classifier.outputs([t]) for t in texts])
    np.testing.assert_array_equal(serving_logits(classifier, texts, batch_size=64), one_by_one)


def test_the_parity_gate_passes_the_int8_model_and_records_it(tiny_checkpoint, tiny_serving, tiny_splits):
    serving = tiny_serving(DEFAULT_QUANTIZATION)
    report = check_parity(tiny_checkpoint, serving, [e.text for e in tiny_splits.test], [e.label for e in tiny_splits.test])
    assert report.passed and report.agreement >= 0.99
    recorded = json.loads((serving / "metrics.json").read_text())["parity"]
    assert recorded["agreement"] == pytest.approx(report.agreement) and "max_logit_diff" in recorded


def test_the_parity_gate_stops_a_model_that_disagrees_with_its_checkpoint(tmp_path, tiny_serving, tiny_splits):
    other = build_tiny_checkpoint(tmp_path, tiny_splits, seed=1, steps=0)  # same shapes, untrained weights
    with pytest.raises(ParityError, match="do not ship it"):
        check_parity(other, tiny_serving(DEFAULT_QUANTIZATION), [e.text for e in tiny_splits.test],
                     [e.label for e in tiny_splits.test])


def _write_data(directory, splits):
    directory.mkdir()
    for name, examples in (("train", splits.train), ("test", splits.test)):
        (directory / f"{name}.txt").write_text("".join(f"{e.text};{e.label}\n" for e in examples))
    return directory


def test_the_export_command_writes_gated_and_evaluated_serving_directories(tiny_checkpoint, tiny_splits, tmp_path):
    from training.__main__ import main

    data = _write_data(tmp_path / "data", tiny_splits)
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--data-dir", str(data),
                 "--output-dir", str(tmp_path / "run"), "--name", "tiny-bert"]) == 0
    for name, quantization in (("serving-fp32", "fp32"), ("serving-int8", DEFAULT_QUANTIZATION)):
        metrics = json.loads((tmp_path / "run" / name / "metrics.json").read_text())
        assert metrics["quantization"] == quantization and "raw_test" in metrics
        assert metrics["batch_independence_max_abs_diff"] <= 1e-4
        assert (tmp_path / "run" / name / "confusion_matrix.png").is_file()
    assert json.loads((tmp_path / "run" / "serving-int8" / "metrics.json").read_text())["parity"]["passed"]
    assert "Parity with the float32 PyTorch model" in (tmp_path / "run" / "serving-int8" / "README.md").read_text()


def test_the_export_command_exits_non_zero_when_the_parity_gate_fails(tiny_splits, tmp_path, monkeypatch, capsys):
    from training import __main__ as cli

    data = _write_data(tmp_path / "data", tiny_splits)
    checkpoint = build_tiny_checkpoint(tmp_path / "checkpoint", tiny_splits, seed=2, steps=0)
    import training.export as export

    # A gate no model passes stands in for a model that fails it.
    monkeypatch.setattr(export, "check_parity", lambda *a, **k: check_parity(*a, **k, min_agreement=1.01))
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--data-dir", str(data),
                     "--output-dir", str(tmp_path / "run")]) == 2
    assert "do not ship it" in capsys.readouterr().err


def test_the_model_cards_speed_is_measured_on_the_batches_the_core_forms():
    from training.export import tweets_per_second

    class Spy:
        def __init__(self):
            self.batches = []

        def lengths(self, texts):
            return [len(t.split()) for t in texts]

        def predict_proba(self, texts):
            self.batches.append(self.lengths(texts))
            return np.zeros((len(texts), 2), dtype=np.float32)

    spy = Spy()
    texts = [" ".join(["w"] * ((i * 7) % 11 + 1)) for i in range(200)]
    assert tweets_per_second(spy, texts, batch_size=64) > 0
    timed = spy.batches[1:]  # the first call warms up
    flat = [n for batch in timed for n in batch]
    assert len(flat) == 200 and flat == sorted(flat)  # 200 texts are one window: sorted across all its batches
