"""Settings parsed once from the environment into a typed, frozen object."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping

GiB = 1 << 30
MiB = 1 << 20


class SettingsError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


def _prefix(name: str, value: str) -> str:
    """Normalize an S3 key prefix: no leading "/", exactly one trailing "/" (empty = whole bucket)."""
    value = value.strip().lstrip("/")
    if any(seg in (".", "..") for seg in value.split("/")):
        raise SettingsError(f"{name}={value!r}: a prefix may not contain '.' or '..' segments")
    return value.rstrip("/") + "/" if value else ""


def _int(env: Mapping[str, str], name: str, default: int | None, minimum: int = 1) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """What a scoring run needs from its environment; build with `Settings.from_env()`."""

    input_prefix: str = "incoming/"
    """INPUT_PREFIX: only keys below it are scored."""
    output_prefix: str = "scored/"
    """OUTPUT_PREFIX: results and manifests go below it, and nothing below it is ever scored."""
    model_dir: str = "/opt/model"
    """MODEL_DIR: the model directory (the model layer is mounted at /opt/model)."""
    model_uri: str | None = None
    """MODEL_URI: optional s3://bucket/prefix/ to download the model from instead."""
    batch_size: int = 64
    """BATCH_SIZE: tweets per ONNX call."""
    output_format: str = "jsonl"
    """OUTPUT_FORMAT: jsonl or csv."""
    text_column: str | None = None
    """TEXT_COLUMN: CSV column / JSON field holding the tweet (default: the first of full_text, text, tweet,
    tweet_text and content present)."""
    max_object_bytes: int = GiB
    """MAX_OBJECT_BYTES: larger input objects are refused."""
    max_decompressed_bytes: int = 4 * GiB
    """MAX_DECOMPRESSED_BYTES: a .gz that inflates past this fails."""
    max_compression_ratio: int = 100
    """MAX_COMPRESSION_RATIO: a .gz that inflates more than this many times fails (gzip bombs)."""
    max_text_chars: int = 2000
    """MAX_TEXT_CHARS: longer tweets become `text_too_long` error rows."""
    max_line_bytes: int = MiB
    """MAX_LINE_BYTES: longer physical lines are rejected without being held in memory."""
    ort_threads: int | None = None
    """ORT_THREADS: onnxruntime intra-op threads (default: the CPUs this process may use)."""
    sweep_safety_ms: int = 20_000
    """SWEEP_SAFETY_MS: stop starting work when less than this much Lambda time is left."""
    bucket: str | None = None
    """BUCKET_NAME: the bucket the sweep lists and events must come from."""
    max_attempts: int = 3
    """MAX_ATTEMPTS: a source that failed this many times is left alone until it changes."""
    inline_max_bytes: int = 8 * MiB
    """INLINE_MAX_BYTES: larger inputs go to the scale-out state machine instead of being scored inline."""
    state_machine_arn: str | None = None
    """STATE_MACHINE_ARN: the plan / score chunks / merge state machine that scores one big input."""
    backlog_state_machine_arn: str | None = None
    """BACKLOG_STATE_MACHINE_ARN: the state machine that scores a list of pending inputs."""
    chunk_bytes: int = 64 * MiB
    """CHUNK_BYTES: a scale-out chunk holds at most this many bytes of (decompressed) input ..."""
    chunk_rows: int = 50_000
    """CHUNK_ROWS: ... and at most this many records, whichever limit comes first."""

    def __post_init__(self) -> None:
        if self.output_format not in ("jsonl", "csv"):
            raise SettingsError(f"OUTPUT_FORMAT={self.output_format!r} must be jsonl or csv")
        if not self.output_prefix:
            raise SettingsError("OUTPUT_PREFIX must not be empty: results would land among the inputs")
        if self.input_prefix.startswith(self.output_prefix):
            raise SettingsError(
                f"INPUT_PREFIX={self.input_prefix!r} lies inside OUTPUT_PREFIX={self.output_prefix!r}: "
                "results would be scored again; pick separate prefixes"
            )
        if self.model_uri is not None and not self.model_uri.startswith("s3://"):
            raise SettingsError(f"MODEL_URI={self.model_uri!r} must look like s3://bucket/prefix/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Parse the environment; raises `SettingsError` naming the first bad variable."""
        d = {f.name: f.default for f in fields(cls)}
        return cls(
            input_prefix=_prefix("INPUT_PREFIX", env.get("INPUT_PREFIX", d["input_prefix"])),
            output_prefix=_prefix("OUTPUT_PREFIX", env.get("OUTPUT_PREFIX", d["output_prefix"])),
            model_dir=_optional(env, "MODEL_DIR") or d["model_dir"],
            model_uri=_optional(env, "MODEL_URI"),
            batch_size=_int(env, "BATCH_SIZE", d["batch_size"]),
            output_format=(_optional(env, "OUTPUT_FORMAT") or d["output_format"]).lower(),
            text_column=_optional(env, "TEXT_COLUMN"),
            max_object_bytes=_int(env, "MAX_OBJECT_BYTES", d["max_object_bytes"]),
            max_decompressed_bytes=_int(env, "MAX_DECOMPRESSED_BYTES", d["max_decompressed_bytes"]),
            max_compression_ratio=_int(env, "MAX_COMPRESSION_RATIO", d["max_compression_ratio"]),
            max_text_chars=_int(env, "MAX_TEXT_CHARS", d["max_text_chars"]),
            max_line_bytes=_int(env, "MAX_LINE_BYTES", d["max_line_bytes"], minimum=16),
            ort_threads=_int(env, "ORT_THREADS", None),
            sweep_safety_ms=_int(env, "SWEEP_SAFETY_MS", d["sweep_safety_ms"], minimum=0),
            bucket=_optional(env, "BUCKET_NAME"),
            max_attempts=_int(env, "MAX_ATTEMPTS", d["max_attempts"]),
            inline_max_bytes=_int(env, "INLINE_MAX_BYTES", d["inline_max_bytes"], minimum=0),
            state_machine_arn=_optional(env, "STATE_MACHINE_ARN"),
            backlog_state_machine_arn=_optional(env, "BACKLOG_STATE_MACHINE_ARN"),
            chunk_bytes=_int(env, "CHUNK_BYTES", d["chunk_bytes"]),
            chunk_rows=_int(env, "CHUNK_ROWS", d["chunk_rows"]),
        )
