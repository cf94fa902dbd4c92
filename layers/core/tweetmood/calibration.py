"""Probability calibration read from `model.json["calibration"]`: logits scaled before the softmax."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

METHODS = ("temperature", "vector")
REFIT = "refit it with `python -m training.calibrate --model DIR --fit-data ... --write`, or delete the field"


class CalibrationError(ValueError):
    """`model.json["calibration"]` is malformed; the message names the field."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax as a new float32 array; rows sum to 1."""
    out = np.array(logits, dtype=np.float32)
    out -= out.max(axis=1, keepdims=True)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _positive_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CalibrationError(f"calibration.{name} must be a positive finite number, got {value!r}")
    return float(value)


def _finite_vector(value, name: str, n_labels: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != n_labels:
        raise CalibrationError(f"calibration.{name} must be a list of {n_labels} numbers (one per label), got {value!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise CalibrationError(f"calibration.{name} must hold finite numbers only, got {value!r}")
    return np.asarray(value, dtype=np.float32)


@dataclass(frozen=True)
class Calibration:
    """How raw logits become probabilities: `softmax(weights * logits + biases)`.

    `temperature` T is the scalar case (weights 1/T, no biases; the argmax never changes); `vector` is vector scaling
    (one weight and one bias per label). Models whose graph outputs probabilities are scaled on their logarithms.
    """

    method: str = "none"
    weights: np.ndarray | float = 1.0
    biases: np.ndarray | float = 0.0

    @classmethod
    def from_meta(cls, field, n_labels: int) -> "Calibration":
        """Parse `model.json["calibration"]`; absent (None) means no calibration (temperature 1)."""
        if field is None:
            return cls()
        if not isinstance(field, dict):
            raise CalibrationError(f"calibration must be an object with a 'method', got {field!r}")
        method = field.get("method")
        if method == "temperature":
            return cls(method, weights=1.0 / _positive_number(field.get("temperature"), "temperature"))
        if method == "vector":
            return cls(method, weights=_finite_vector(field.get("weights"), "weights", n_labels),
                       biases=_finite_vector(field.get("biases"), "biases", n_labels))
        raise CalibrationError(f"calibration.method must be one of {list(METHODS)}, got {method!r}")

    def probabilities(self, outputs: np.ndarray, kind: str = "logits") -> np.ndarray:
        """Calibrated probabilities from the graph's `outputs` ("logits" or "probabilities"); without a calibration,
        the graph's own probabilities or the plain softmax of its logits, as before calibration existed."""
        if self.method == "none":
            return outputs if kind == "probabilities" else softmax(outputs)
        if kind == "probabilities":
            # log(0) would be -inf and 0 * -inf is NaN; the smallest normal float32 stands in for zero.
            outputs = np.log(np.maximum(outputs, np.finfo(np.float32).tiny))
        return softmax(np.asarray(outputs, dtype=np.float32) * self.weights + self.biases)
