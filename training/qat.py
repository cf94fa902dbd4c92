"""Quantization-aware fine-tuning: train through the rounding the served int8 graph applies, so it keeps the labels.

`int8-static-fused` (training/export.py) serves every Linear layer as a uint8 x int8 product: the input rounded to
uint8 with one scale and zero point per tensor, fixed by MinMax over calibration texts, and the weight rounded to
[-64, 64] with one scale (absmax / 64) per output channel (onnxruntime's `reduce_range`); embedding tables are uint8
with one scale per table. Fine-tuning with the same rounding in the forward pass (straight-through gradients) lets the
weights settle where that rounding changes few labels. The saved checkpoint is an ordinary float model: export
calibrates and quantizes it as any other.

    install_fake_quant(model, calibration_batches)   # ranges from one-text batches, as export measures them
"""

from __future__ import annotations

import logging
from typing import Iterable

import torch

from training.export import uint8_qparams

log = logging.getLogger(__name__)

WEIGHT_QMIN, WEIGHT_QMAX = -64, 64
"""Symmetric reduced-range int8 weights, scale absmax / 64: what onnxruntime's quantize_dynamic(reduce_range=True,
weight_type=QInt8) writes (checked against an exported graph's scales)."""
ACT_QMIN, ACT_QMAX = 0, 255


def fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric reduced-range rounding with a straight-through gradient."""
    w = weight.float()
    scale = (w.detach().abs().amax(dim=1) / WEIGHT_QMAX).clamp_min(1e-12)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, WEIGHT_QMIN, WEIGHT_QMAX)


def fake_quant_table(table: torch.Tensor) -> torch.Tensor:
    """One uint8 scale and zero point for a whole embedding table (onnxruntime's Gather quantization)."""
    t = table.float()
    scale, zero = uint8_qparams(float(t.detach().min()), float(t.detach().max()))
    return torch.fake_quantize_per_tensor_affine(t, scale, zero, ACT_QMIN, ACT_QMAX)


class _FakeQuantEmbedding:
    def __init__(self, module: torch.nn.Embedding):
        self.module = module

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        m = self.module
        return torch.nn.functional.embedding(ids, fake_quant_table(m.weight).to(m.weight.dtype), m.padding_idx)


class _FakeQuantLinear:
    """Replaces one nn.Linear's forward; adds no parameters or buffers, so the state dict is unchanged."""

    def __init__(self, module: torch.nn.Linear, scale: float, zero: int):
        self.module, self.scale, self.zero = module, scale, zero

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xq = torch.fake_quantize_per_tensor_affine(x.float(), self.scale, self.zero, ACT_QMIN, ACT_QMAX).to(x.dtype)
        return torch.nn.functional.linear(xq, fake_quant_weight(self.module.weight).to(x.dtype),
                                          None if self.module.bias is None else self.module.bias.to(x.dtype))


def linear_layers(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


@torch.no_grad()
def input_ranges(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, tuple[float, float]]:
    """(min, max) of every Linear layer's input over `batches`, in float32 (one text per batch: no padding)."""
    layers = linear_layers(model)
    seen: dict[str, list[float]] = {name: [0.0, 0.0] for name in layers}

    def hook(name):
        def record(_module, inputs):
            x = inputs[0].detach()
            seen[name][0] = min(seen[name][0], float(x.min()))
            seen[name][1] = max(seen[name][1], float(x.max()))
        return record

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in layers.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(**batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: (lo, hi) for name, (lo, hi) in seen.items()}


def install_fake_quant(model: torch.nn.Module, calibration_batches: Iterable[dict[str, torch.Tensor]]) -> int:
    """Make every embedding table and Linear layer compute through the served graph's rounding. Input ranges are
    measured as export measures them, on a graph whose earlier layers already round: once in float, then again with
    the rounding in place. Returns how many Linear layers were wrapped; `remove_fake_quant` restores float."""
    batches = list(calibration_batches)
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            module.forward = _FakeQuantEmbedding(module)
    layers = linear_layers(model)
    ranges = input_ranges(model, batches)
    for name, module in layers.items():
        module.forward = _FakeQuantLinear(module, *uint8_qparams(*ranges[name]))
    for name, (low, high) in input_ranges(model, batches).items():
        layers[name].forward.scale, layers[name].forward.zero = uint8_qparams(low, high)
    log.info("fake int8 rounding on %d Linear layers and the embedding tables", len(layers))
    return len(layers)


def remove_fake_quant(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), (_FakeQuantLinear, _FakeQuantEmbedding)):
            del module.forward
