"""The CLS-only serving graph computes the same logits as the classifier, with the last layer for [CLS] alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

from conftest import build_tiny_checkpoint  # noqa: E402
from training.cls_graph import ClsOnlyClassifier, export_cls_only, supports  # noqa: E402
from training.export import plain_export, quantization_source  # noqa: E402

pytestmark = pytest.mark.unit


def _padded_batch(vocab_size: int):
    torch.manual_seed(1)
    ids = torch.randint(5, vocab_size, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 2:] = 0
    return ids * mask, mask, torch.zeros_like(ids)


def test_the_cls_only_forward_matches_the_classifier_on_a_padded_batch(tiny_checkpoint):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint).eval()
    ids, mask, types = _padded_batch(model.config.vocab_size)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        got = ClsOnlyClassifier(model)(ids, mask, types)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_exported_graph_matches_the_classifier_and_keeps_dynamic_axes(tiny_checkpoint, tmp_path):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint).eval()
    path = export_cls_only(tiny_checkpoint, tmp_path / "cls.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in [(1, 3), (4, 9)]:
        ids, mask, types = (t[:batch, :length] for t in _padded_batch(model.config.vocab_size))
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.numpy()
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                 "token_type_ids": types.numpy()})[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_last_layer_feed_forward_runs_on_one_position_per_tweet(tiny_checkpoint, tmp_path):
    """Count the rows the last layer's feed-forward multiplies, with a hook on its first matrix."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint).eval()
    rows = []
    model.bert.encoder.layer[-1].intermediate.dense.register_forward_hook(
        lambda module, args, out: rows.append(args[0].shape[:2]))
    ids, mask, types = _padded_batch(model.config.vocab_size)
    with torch.no_grad():
        ClsOnlyClassifier(model)(ids, mask, types)
        model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert rows == [torch.Size([4, 1]), torch.Size([4, 9])]


def test_models_without_a_bert_pooler_keep_the_full_graph(tmp_path):
    config = transformers.DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=3)
    model = transformers.DistilBertForSequenceClassification(config)
    assert not supports(model)
    with pytest.raises(ValueError, match="not a BERT-style classifier"):
        ClsOnlyClassifier(model)


def test_the_export_writes_a_checked_cls_only_graph_and_quantization_starts_from_it(tiny_export):
    work, _ = tiny_export
    assert json.loads((work / "export.json").read_text())["cls_only_max_abs_diff"] <= 1e-4
    assert quantization_source(work).name == "model-cls-only.onnx"
    assert quantization_source(work, cls_only=False) == plain_export(work)
