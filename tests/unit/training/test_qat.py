"""Quantization-aware fine-tuning: the forward pass rounds as the served int8 graph does, and the checkpoint stays float."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import LABELS, build_tiny_checkpoint  # noqa: E402
from training.export import uint8_qparams  # noqa: E402
from training.qat import (WEIGHT_QMAX, WEIGHT_QMIN, fake_quant_weight, install_fake_quant,  # noqa: E402
                          remove_fake_quant)
from training.transformer import TransformerArgs, _load, collate, encode, train_transformer  # noqa: E402

pytestmark = pytest.mark.unit


def _logits(model, tokenizer, texts) -> np.ndarray:
    batch = collate([(ids, 0) for ids in encode(tokenizer, texts, 64)], tokenizer.pad_token_id, True)
    batch.pop("labels")
    with torch.no_grad():
        return model(**batch).logits.numpy()


def _one_text_batches(tokenizer, texts):
    for ids in encode(tokenizer, texts, 64):
        batch = collate([(ids, 0)], tokenizer.pad_token_id, True)
        batch.pop("labels")
        yield batch


def test_activation_ranges_become_the_uint8_scale_and_zero_point_export_fixes():
    scale, zero = uint8_qparams(-1.0, 3.0)
    assert scale == pytest.approx(4.0 / 255) and zero == round(1.0 / scale)
    scale, zero = uint8_qparams(0.5, 2.0)  # the range always holds 0, so zero pads exactly
    assert scale == pytest.approx(2.0 / 255) and zero == 0


def test_weights_round_to_seven_bit_steps_per_output_channel():
    weight = torch.randn(8, 16) * torch.linspace(0.01, 2.0, 8)[:, None]
    rounded = fake_quant_weight(weight)
    steps = rounded / (weight.abs().amax(dim=1, keepdim=True) / WEIGHT_QMAX)
    torch.testing.assert_close(steps, steps.round(), atol=1e-4, rtol=0)
    assert steps.round().min() >= WEIGHT_QMIN and steps.round().max() <= WEIGHT_QMAX
    assert (rounded - weight).abs().max() <= (weight.abs().amax(dim=1) / WEIGHT_QMAX).max() / 2 + 1e-6


def test_rounding_gradients_pass_straight_through_to_the_weights():
    weight = torch.randn(4, 6, requires_grad=True)
    fake_quant_weight(weight).sum().backward()
    torch.testing.assert_close(weight.grad, torch.ones_like(weight))


def test_fake_rounding_changes_the_logits_keeps_the_state_dict_and_comes_off_again(tiny_checkpoint, tiny_splits):
    tokenizer, model = _load(str(tiny_checkpoint), LABELS)
    model.eval()
    texts = [e.text for e in tiny_splits.test[:32]]
    keys = set(model.state_dict())
    before = _logits(model, tokenizer, texts)

    assert install_fake_quant(model, _one_text_batches(tokenizer, [e.text for e in tiny_splits.train[:64]])) == len(
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)])
    rounded = _logits(model, tokenizer, texts)
    assert set(model.state_dict()) == keys
    assert 0 < np.abs(rounded - before).max() < 0.5

    remove_fake_quant(model)
    np.testing.assert_allclose(_logits(model, tokenizer, texts), before, atol=1e-6)


def test_the_rounded_forward_is_closer_to_the_served_int8_graph_than_the_float_one(tiny_checkpoint, tiny_splits,
                                                                                      tiny_serving):
    from tweetmood.classifier import Classifier

    served = Classifier.from_dir(tiny_serving("int8-static-fused"), threads=1)
    texts = [e.text for e in tiny_splits.test]
    onnx_logits = np.log(served.predict_proba(texts))
    tokenizer, model = _load(str(tiny_checkpoint), LABELS)
    model.eval()
    log_softmax = lambda z: z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # noqa: E731
    float_gap = np.abs(log_softmax(_logits(model, tokenizer, texts)) - onnx_logits).mean()
    # the serving fixture calibrated on the first 128 training texts
    install_fake_quant(model, _one_text_batches(tokenizer, [e.text for e in tiny_splits.train[:128]]))
    rounded_gap = np.abs(log_softmax(_logits(model, tokenizer, texts)) - onnx_logits).mean()
    assert rounded_gap < float_gap


def test_a_fake_quant_run_trains_selects_and_saves_a_plain_float_checkpoint(tiny_splits, tmp_path):
    base = build_tiny_checkpoint(tmp_path / "base", tiny_splits, seed=3, steps=40)
    args = TransformerArgs(base_model=str(base), output_dir=str(tmp_path / "qat"), lr=1e-3, epochs=1, batch_size=16,
                           patience=0, device="cpu", cpu_threads=1, progress=False, fake_quant=True)
    result = train_transformer(args, tiny_splits)

    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["args"]["fake_quant"] is True
    _, saved = _load(str(result.checkpoint_dir), LABELS)
    assert not any("forward" in vars(m) for m in saved.modules())
    assert metrics["test"]["n"] == len(tiny_splits.test)
