"""The scoring loop: rows in, result rows and a manifest out. No S3 here: callers pass streams and sinks."""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from tweetmood.batching import scored_in_order
from tweetmood.manifest import COMPLETE, FAILED, OutputManifest, utc_now
from tweetmood.readers import ChunkStart, read_records
from tweetmood.records import FileError, Record, Rejected
from tweetmood.settings import Settings
from tweetmood.storage import temp_beside
from tweetmood.writers import make_writer

RemainingMs = Callable[[], int]
# How often (in rows) the scoring loop looks at the clock.
CLOCK_EVERY = 256
MANIFEST_SUFFIX = ".manifest.json"


@dataclasses.dataclass
class Progress:
    """Running totals of a scoring run: rows written so far and what they were."""

    rows: int = 0
    labels: Counter = dataclasses.field(default_factory=Counter)
    errors: Counter = dataclasses.field(default_factory=Counter)


@dataclasses.dataclass
class Stop:
    """Why reading ended early, filled in by `_guarded`."""

    error: FileError | None = None
    retryable: bool = False


def _guarded(
    items: Iterator[Record | Rejected], stop: Stop, name: str, remaining_ms: RemainingMs | None, safety_ms: int
) -> Iterator[Record | Rejected]:
    """Pass items through; turn a `FileError` or a closing time window into a clean end, so
    rows already read still get scored and counted."""
    count = 0
    try:
        for item in items:
            yield item
            count += 1
            if remaining_ms is not None and count % CLOCK_EVERY == 0 and remaining_ms() < safety_ms:
                stop.error = FileError(
                    f"{name}: scoring stopped after {count} rows because the Lambda was about to time out; "
                    f"it is retried by the sweep; if this repeats, lower INLINE_MAX_BYTES so files this big are "
                    "scored by the scale-out state machine",
                    "out_of_time",
                )
                stop.retryable = True
                return
    except FileError as exc:
        stop.error = exc


def ordered_labels(labels: Iterable[str], counts: Counter | dict) -> dict[str, int]:
    """Counts per label in the model's label order (zeros included), then any others."""
    out = {label: counts.get(label, 0) for label in labels}
    out.update({k: v for k, v in counts.items() if k not in out})
    return out


def score_items(
    items: Iterable[Record | Rejected],
    name: str,
    classifier: Any,
    settings: Settings,
    sink: BinaryIO,
    *,
    header: bool = True,
    remaining_ms: RemainingMs | None = None,
    on_row: Callable[[Progress], None] | None = None,
) -> tuple[OutputManifest, Stop]:
    """Score `items` (read from `name`) into `sink`; the manifest (no source/output fields) and why it stopped.

    `header=False` leaves out a CSV result's header row (a scale-out part after the first).
    """
    started, t0 = utc_now(), time.perf_counter()
    model_s0 = getattr(classifier, "model_seconds", 0.0)
    progress = Progress()
    stop = Stop()
    guarded = _guarded(iter(items), stop, name, remaining_ms, settings.sweep_safety_ms)
    writer = make_writer(settings.output_format, sink, classifier.labels, classifier.version, header=header)
    try:
        for item, probs in scored_in_order(guarded, classifier.predict_proba, settings.batch_size,
                                           lengths=classifier.lengths):
            label = writer.write(item, probs)
            if label is None:
                progress.errors[item.error] += 1
            else:
                progress.labels[label] += 1
            progress.rows += 1
            if on_row is not None:
                on_row(progress)
    finally:
        writer.close()
    duration = time.perf_counter() - t0
    scored, rejected = sum(progress.labels.values()), sum(progress.errors.values())
    manifest = OutputManifest(
        source_key=name,
        format=settings.output_format,
        rows_read=scored + rejected,
        rows_scored=scored,
        rows_rejected=rejected,
        label_counts=ordered_labels(classifier.labels, progress.labels),
        error_counts=dict(sorted(progress.errors.items())),
        model_version=classifier.version,
        model_sha256=classifier.sha256,
        started=started,
        finished=utc_now(),
        duration_s=round(duration, 3),
        tweets_per_s=round(scored / duration, 1) if duration > 0 else 0.0,
        model_s=round(getattr(classifier, "model_seconds", 0.0) - model_s0, 3),
        status=FAILED if stop.error else COMPLETE,
        reason=stop.error.reason if stop.error else None,
        retryable=stop.retryable,
    )
    return manifest, stop


def score_stream(
    stream: BinaryIO,
    name: str,
    classifier: Any,
    settings: Settings,
    sink: BinaryIO,
    *,
    remaining_ms: RemainingMs | None = None,
    on_row: Callable[[Progress], None] | None = None,
    at: ChunkStart | None = None,
) -> OutputManifest:
    """Read `stream` (named `name`), score it with `classifier`, write result rows to `sink`.

    Returns the manifest (source bucket/ETag left for the caller). A whole-file failure gives
    status "failed" with the reason; rows read before it are still scored and counted.
    `on_row` sees the running totals after every row written; `at` scores a chunk of a file.
    """
    items = read_records(stream, name, settings, at=at)
    header = at is None or at.file_start
    return score_items(items, name, classifier, settings, sink, header=header, remaining_ms=remaining_ms,
                       on_row=on_row)[0]


def local_manifest_path(output: str | Path) -> Path:
    """A local result's manifest sits beside it: `<output>.manifest.json`."""
    return Path(f"{output}{MANIFEST_SUFFIX}")


def check_local_output(path: Path, output: Path) -> None:
    """Refuse an output path that would overwrite its input."""
    if output.resolve() == path.resolve():
        raise ValueError(f"--output {output} would overwrite the input")


def score_file(
    path: str | Path, output: str | Path, *, classifier: Any, settings: Settings,
    on_row: Callable[[Progress], None] | None = None,
) -> OutputManifest:
    """Score a local file in this process: the output appears (renamed into place) only when complete,
    and `<output>.manifest.json` is written last."""
    path, output = Path(path), Path(output)
    check_local_output(path, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = temp_beside(output)
    try:
        with os.fdopen(fd, "wb") as sink, open(path, "rb") as stream:
            manifest = score_stream(stream, str(path), classifier, settings, sink, on_row=on_row)
        manifest.source_size = path.stat().st_size
        manifest.output_key = str(output)
        if manifest.complete:
            os.replace(tmp_name, output)
        elif output.exists():
            output.unlink()  # a stale result from an earlier version of the input would mislead
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    local_manifest_path(output).write_bytes(manifest.to_json())
    return manifest
