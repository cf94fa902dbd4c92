"""A classifier over an ONNX model directory: onnxruntime session + text encoder + calibrated softmax."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tweetmood.batching import characters
from tweetmood.calibration import REFIT, Calibration, CalibrationError
from tweetmood.encoders import Encoder, build_encoder
from tweetmood.normalize import normalizer_for

REQUIRED_KEYS = ("labels", "max_length", "version", "sha256")


class ModelError(RuntimeError):
    """The model directory is missing, incomplete or does not match its metadata."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_model_meta(model_dir: Path) -> dict:
    """Read and check `model.json`, naming what is missing."""
    meta_path = Path(model_dir) / "model.json"
    if not meta_path.is_file():
        raise ModelError(f"{meta_path} not found: point MODEL_DIR (or --model) at a directory written by the training job")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path} is not valid JSON ({exc}); re-export the model") from exc
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{meta_path} lacks {', '.join(missing)}; re-export the model with the training job")
    return meta


def session_options(threads: int | None = None):
    """Session options tuned for batch scoring on a few vCPUs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


@dataclass
class Classifier:
    """Scores texts with one model directory; create once per process and reuse."""

    model_dir: Path
    meta: dict
    session: object
    encoder: Encoder
    threads: int = 1
    labels: list[str] = field(init=False)
    calibration: Calibration = field(init=False)
    """How logits become probabilities, from model.json (temperature 1 when it has none)."""
    model_seconds: float = field(init=False, default=0.0)
    """Wall time spent inside onnxruntime so far, so callers can tell model time from I/O time."""

    def __post_init__(self) -> None:
        self.labels = list(self.meta["labels"])
        self._output_name = self.meta.get("output", {}).get("name") or self.session.get_outputs()[0].name
        self._output_kind = self.meta.get("output", {}).get("kind", "logits")
        # A model directory without the field predates it: it was trained on tweet-v1.
        try:
            self._normalize = normalizer_for(self.meta.get("normalization", "tweet-v1"))
        except ValueError as exc:
            raise ModelError(f"{self.model_dir}/model.json: {exc}; this tweetmood cannot serve it") from None
        try:
            self.calibration = Calibration.from_meta(self.meta.get("calibration"), len(self.labels))
        except CalibrationError as exc:
            raise ModelError(f"{self.model_dir}/model.json: {exc}; {REFIT}") from None
        self.per_row = self.meta.get("execution") == "per-row" and hasattr(self.encoder, "rows")
        self._pool = ThreadPoolExecutor(self.threads) if self.per_row and self.threads > 1 else None

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def sha256(self) -> str:
        return str(self.meta["sha256"])

    @property
    def max_length(self) -> int:
        return int(self.meta["max_length"])

    @classmethod
    def from_dir(cls, model_dir: str | Path, threads: int | None = None, verify: bool = True) -> "Classifier":
        """Open `model_dir`; with `verify`, the model file must match the sha256 in `model.json`."""
        import onnxruntime as ort

        model_dir = Path(model_dir)
        meta = read_model_meta(model_dir)
        threads = threads or len(os.sched_getaffinity(0))
        model_path = model_dir / meta.get("model_file", "model.onnx")
        if not model_path.is_file():
            raise ModelError(f"{model_path} not found: the model directory is incomplete")
        if verify and sha256_file(model_path) != meta["sha256"]:
            raise ModelError(f"{model_path} does not match the sha256 in model.json: the artifact is corrupt or was edited")
        # Per-row models run one tweet per call, several calls at once: one intra-op thread per call.
        per_row = meta.get("execution") == "per-row"
        session = ort.InferenceSession(str(model_path), sess_options=session_options(1 if per_row else threads),
                                       providers=["CPUExecutionProvider"])
        input_types = {i.name: i.type for i in session.get_inputs()}
        encoder = build_encoder(model_dir, meta.get("encoder", {"type": "wordpiece"}), int(meta["max_length"]), input_types)
        return cls(model_dir=model_dir, meta=meta, session=session, encoder=encoder, threads=threads)

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Apply the model's normalization (the same function training used)."""
        return [self._normalize(t) for t in texts] if self._normalize else list(texts)

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """How long each text is for this model's padding: tokens after normalization where the encoder pads a
        batch to its longest row, characters otherwise (fixed-width inputs and one-tweet calls do not care)."""
        if hasattr(self.encoder, "lengths") and not self.per_row:
            return self.encoder.lengths(self.prepare(texts))
        return characters(texts)

    def outputs(self, texts: Sequence[str], prepared: bool = False) -> np.ndarray:
        """The graph's output (logits or probabilities, as model.json says) for `texts`, computed the way the model
        is served (`execution`: one tweet per call or batched), shape `[len(texts), len(labels)]`, float32."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        texts = texts if prepared else self.prepare(texts)
        if self.per_row:
            run = lambda feed: self.session.run([self._output_name], feed)[0]  # noqa: E731
            feeds = self.encoder.rows(texts)
            started = time.perf_counter()
            outs = list(self._pool.map(run, feeds) if self._pool else map(run, feeds))
            self.model_seconds += time.perf_counter() - started
            out = np.concatenate(outs).astype(np.float32, copy=False)
        else:
            feeds = self.encoder(texts)
            started = time.perf_counter()
            out = np.asarray(self.session.run([self._output_name], feeds)[0], dtype=np.float32)
            self.model_seconds += time.perf_counter() - started
        return out

    def predict_proba(self, texts: Sequence[str], prepared: bool = False) -> np.ndarray:
        """Probabilities, shape `[len(texts), len(labels)]`, float32, rows summing to 1; calibrated when model.json
        has a `calibration` (without one, the graph's probabilities or the plain softmax of its logits)."""
        out = self.outputs(texts, prepared)
        return self.calibration.probabilities(out, self._output_kind) if len(out) else out
