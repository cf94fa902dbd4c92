"""`OutputManifest`: what was scored, from which source version, by which model, with what outcome."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

COMPLETE = "complete"
FAILED = "failed"
# Only on the copy a run returns, never written: the run checkpointed and another invocation goes on.
IN_PROGRESS = "in_progress"


def utc_now() -> str:
    """Now as ISO-8601 UTC with a Z, to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class OutputManifest:
    """Written next to the output, last: a result counts once its manifest is complete and names the source ETag."""

    source_bucket: str | None = None
    source_key: str = ""
    source_etag: str | None = None
    source_size: int | None = None
    output_key: str = ""
    format: str = "jsonl"
    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    error_counts: dict[str, int] = field(default_factory=dict)
    model_version: str = ""
    model_sha256: str = ""
    started: str = ""
    finished: str = ""
    duration_s: float = 0.0
    tweets_per_s: float = 0.0
    model_s: float = 0.0
    """Seconds inside onnxruntime; the rest of duration_s is reading, normalizing, tokenizing and writing."""
    status: str = COMPLETE
    reason: str | None = None
    """For a failed file: what went wrong and what to do."""
    retryable: bool = False
    """A failure that may pass on another try (S3 or time trouble), as opposed to a bad file."""
    attempts: int = 1
    """Tries at this source version, this one included."""
    invocations: int = 1
    """Lambda invocations that scored part of the file (more than one when a big file was checkpointed)."""
    skipped: bool = False
    """Set on the returned copy only when an earlier complete result was reused."""

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        """One line of compact JSON (Athena's JSON SerDe reads one object per line)."""
        return orjson.dumps(self.to_dict()) + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> "OutputManifest":
        """Parse a manifest, ignoring fields a newer tweetmood may have added."""
        raw = orjson.loads(data)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def summary(self) -> str:
        """A few human lines: outcome, counts, speed."""
        where = f"s3://{self.source_bucket}/{self.source_key}" if self.source_bucket else self.source_key
        head = f"{where}: {self.status}"
        if self.skipped:
            head += " (already scored for this version; nothing to do)"
        lines = [
            head,
            f"  rows read {self.rows_read}, scored {self.rows_scored}, rejected {self.rows_rejected}"
            f" in {self.duration_s:.2f}s ({self.tweets_per_s:,.0f} tweets/s), model {self.model_version}",
        ]
        if self.label_counts:
            lines.append("  labels: " + ", ".join(f"{k} {v}" for k, v in self.label_counts.items()))
        if self.error_counts:
            lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in self.error_counts.items()))
        if self.reason:
            lines.append(f"  reason: {self.reason}")
        return "\n".join(lines)
