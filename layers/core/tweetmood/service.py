"""The one scoring code path: streams in, results and a manifest out. Lambda handlers and the CLI call this."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator
from urllib.parse import unquote_plus

from tweetmood.batching import scored_in_order
from tweetmood.manifest import COMPLETE, FAILED, OutputManifest, utc_now
from tweetmood.readers import input_format, read_records
from tweetmood.records import FileError, Record, Rejected
from tweetmood.settings import Settings, SettingsError
from tweetmood.writers import CONTENT_TYPES, make_writer

log = logging.getLogger("tweetmood")

RemainingMs = Callable[[], int]
# How often (in rows) the scoring loop looks at the clock.
CLOCK_EVERY = 256
# S3 multipart parts (at least 5 MiB except the last): bounded memory, at most ~160 GB of output.
PART_SIZE = 16 << 20


class ObjectGone(Exception):
    """The object named by an event no longer exists (deleted or renamed before it was scored)."""


# --- keys ----------------------------------------------------------------------------


def output_key_for(key: str, settings: Settings) -> str:
    """`<output_prefix><path below input_prefix>.jsonl` (or `.csv`)."""
    if not key.startswith(settings.input_prefix):
        raise ValueError(f"{key} is not under INPUT_PREFIX={settings.input_prefix!r}")
    return f"{settings.output_prefix}{key[len(settings.input_prefix):]}.{settings.output_format}"


def manifest_key_for(output_key: str) -> str:
    """The manifest sits beside its output: `<output_key>.manifest.json`."""
    return output_key + ".manifest.json"


def is_scoreable_key(key: str, size: int | None, settings: Settings) -> tuple[bool, str]:
    """Whether an object should be scored, and if not, why (for the skip list)."""
    if not key or key.endswith("/"):
        return False, f"{key!r} is a folder marker, not a file"
    if key.startswith(settings.output_prefix):
        return False, f"{key} is under OUTPUT_PREFIX={settings.output_prefix!r}: results are never scored again"
    if not key.startswith(settings.input_prefix):
        return False, f"{key} is outside INPUT_PREFIX={settings.input_prefix!r}; upload it below that prefix"
    if ".." in key.split("/"):
        return False, f"{key} has a '..' path segment; rename it"
    if size == 0:
        return False, f"{key} is a zero-byte object: there is nothing to score"
    if input_format(key) is None:
        return False, f"{key} is not .txt, .csv or .jsonl (optionally .gz); it was left alone"
    return True, ""


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


# --- the core loop -------------------------------------------------------------------


@dataclasses.dataclass
class _Stop:
    """Why reading ended early, filled in by `_guarded`."""

    error: FileError | None = None
    retryable: bool = False


def _guarded(
    items: Iterator[Record | Rejected], stop: _Stop, name: str, remaining_ms: RemainingMs | None, safety_ms: int
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
                    "it is retried by the sweep; if this repeats, split the file into smaller ones",
                    "out_of_time",
                )
                stop.retryable = True
                return
    except FileError as exc:
        stop.error = exc


def score_stream(
    stream: BinaryIO,
    name: str,
    classifier: Any,
    settings: Settings,
    sink: BinaryIO,
    *,
    remaining_ms: RemainingMs | None = None,
) -> OutputManifest:
    """Read `stream` (named `name`), score it with `classifier`, write result rows to `sink`.

    Returns the manifest (source bucket/ETag left for the caller). A whole-file failure gives
    status "failed" with the reason; rows read before it are still scored and counted.
    """
    started, t0 = utc_now(), time.perf_counter()
    labels = Counter({label: 0 for label in classifier.labels})
    errors: Counter[str] = Counter()
    stop = _Stop()
    items = _guarded(read_records(stream, name, settings), stop, name, remaining_ms, settings.sweep_safety_ms)
    writer = make_writer(settings.output_format, sink, classifier.labels, classifier.version)
    model_s0 = getattr(classifier, "model_seconds", 0.0)
    try:
        for item, probs in scored_in_order(items, classifier.predict_proba, settings.batch_size):
            label = writer.write(item, probs)
            if label is None:
                errors[item.error] += 1
            else:
                labels[label] += 1
    finally:
        writer.close()
    duration = time.perf_counter() - t0
    scored, rejected = sum(labels.values()), sum(errors.values())
    return OutputManifest(
        source_key=name,
        format=settings.output_format,
        rows_read=scored + rejected,
        rows_scored=scored,
        rows_rejected=rejected,
        label_counts=dict(labels),
        error_counts=dict(sorted(errors.items())),
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


def score_file(
    path: str | Path, output: str | Path, *, classifier: Any, settings: Settings
) -> OutputManifest:
    """Score a local file: the output appears (renamed into place) only when complete,
    and `<output>.manifest.json` is written last."""
    path, output = Path(path), Path(output)
    if output.resolve() == path.resolve():
        raise ValueError(f"--output {output} would overwrite the input")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tweetmood-", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as sink, open(path, "rb") as stream:
            manifest = score_stream(stream, str(path), classifier, settings, sink)
        manifest.source_size = path.stat().st_size
        manifest.output_key = str(output)
        if manifest.complete:
            os.replace(tmp_name, output)
        elif output.exists():
            output.unlink()  # a stale result from an earlier version of the input would mislead
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    Path(manifest_key_for(str(output))).write_bytes(manifest.to_json())
    return manifest


# --- S3 ------------------------------------------------------------------------------


def read_manifest(s3: Any, bucket: str, key: str) -> OutputManifest | None:
    """The manifest at `key`, or None when absent or unreadable (then the source is scored again)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    try:
        return OutputManifest.from_json(body.read())
    except (ValueError, TypeError):
        log.warning("manifest s3://%s/%s is unreadable; scoring its source again", bucket, key)
        return None
    finally:
        body.close()


def _settled(previous: OutputManifest | None, etag: str | None, settings: Settings) -> bool:
    """True when this source version needs no (more) work: complete, or failed for good."""
    if previous is None or etag is None or previous.source_etag != etag:
        return False
    return previous.complete or not previous.retryable or previous.attempts >= settings.max_attempts


def score_s3_object(
    s3: Any,
    bucket: str,
    key: str,
    *,
    settings: Settings,
    classifier: Any,
    etag: str | None = None,
    size: int | None = None,
    output_key: str | None = None,
    remaining_ms: RemainingMs | None = None,
    force: bool = False,
) -> OutputManifest:
    """Score `s3://bucket/key` into the output prefix; the manifest is written last.

    Skips (returning the earlier manifest with `skipped=True`) when the manifest already
    names this source ETag and is complete or failed for good; `force` scores anyway.
    Raises `ObjectGone` if the object has disappeared; other failures become a failed manifest.
    """
    output_key = output_key or output_key_for(key, settings)
    if not output_key.startswith(settings.output_prefix) or output_key == key:
        raise ValueError(f"refusing to write {output_key}: outputs go under OUTPUT_PREFIX={settings.output_prefix!r}")
    manifest_key = manifest_key_for(output_key)
    previous = read_manifest(s3, bucket, manifest_key)
    if not force and _settled(previous, _etag(etag), settings):
        return dataclasses.replace(previous, skipped=True)
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        raise ObjectGone(f"s3://{bucket}/{key} no longer exists (deleted or replaced before it was scored)") from None
    body = response["Body"]
    current = _etag(response.get("ETag")) or _etag(etag)
    size = response.get("ContentLength", size)
    if not force and _settled(previous, current, settings):
        body.close()
        return dataclasses.replace(previous, skipped=True)
    attempts = previous.attempts + 1 if previous and previous.source_etag == current and not previous.complete else 1
    try:
        if size is not None and size > settings.max_object_bytes:
            manifest = _failed(
                key, settings, classifier,
                f"{key} is {size} bytes, more than MAX_OBJECT_BYTES={settings.max_object_bytes}; split it into smaller files",
                retryable=False,
            )
        else:
            manifest = _score_to_s3(s3, bucket, key, output_key, body, settings, classifier, remaining_ms)
    except Exception as exc:  # S3 or model trouble: not the file's fault, so worth another try
        log.exception("scoring s3://%s/%s failed", bucket, key)
        manifest = _failed(
            key, settings, classifier,
            f"scoring {key} stopped on {type(exc).__name__}: {exc}; the sweep retries it "
            f"(attempt {attempts} of {settings.max_attempts})",
            retryable=True,
        )
    finally:
        body.close()
    manifest = dataclasses.replace(
        manifest, source_bucket=bucket, source_key=key, source_etag=current, source_size=size,
        output_key=output_key, attempts=attempts,
    )
    if not manifest.complete:
        # The output of an older version of this source would no longer match its manifest.
        s3.delete_object(Bucket=bucket, Key=output_key)
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=manifest.to_json(), ContentType="application/json")
    return manifest


def _score_to_s3(
    s3: Any, bucket: str, key: str, output_key: str, body: BinaryIO, settings: Settings, classifier: Any,
    remaining_ms: RemainingMs | None,
) -> OutputManifest:
    sink = MultipartSink(s3, bucket, output_key, CONTENT_TYPES[settings.output_format])
    try:
        manifest = score_stream(body, key, classifier, settings, sink, remaining_ms=remaining_ms)
        if manifest.complete:
            sink.commit()
    finally:
        sink.abort()  # no-op once committed
    return manifest


class MultipartSink(io.RawIOBase):
    """A write-only stream into one S3 object that becomes visible only on `commit()`.

    Output goes up in parts of `part_size` as it is written, so neither memory nor /tmp
    (512 MB by default on Lambda) limits the output size; `abort()` discards the parts.
    A bucket lifecycle rule should abort incomplete uploads left by a killed invocation.
    """

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str, part_size: int = PART_SIZE):
        super().__init__()
        self._s3, self._bucket, self._key, self._type = s3, bucket, key, content_type
        self._part_size = part_size
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._upload_id: str | None = None
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._upload_part(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]
        return len(data)

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._type
            )["UploadId"]
        number = len(self._parts) + 1
        etag = self._s3.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})

    def commit(self) -> None:
        """Make the object visible with everything written so far."""
        if self._upload_id is None:  # small output: one plain PUT
            self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), ContentType=self._type)
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        self._buffer.clear()
        self._done = True

    def abort(self) -> None:
        """Drop an uncommitted upload; nothing becomes visible."""
        if not self._done and self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        self._buffer.clear()
        self._done = True


def _failed(key: str, settings: Settings, classifier: Any, reason: str, *, retryable: bool) -> OutputManifest:
    now = utc_now()
    return OutputManifest(
        source_key=key, format=settings.output_format, model_version=classifier.version,
        model_sha256=classifier.sha256, started=now, finished=now, status=FAILED, reason=reason, retryable=retryable,
    )


# --- events and the sweep ------------------------------------------------------------


def _record_outcome(summary: dict, key: str, run: Callable[[], OutputManifest]) -> None:
    try:
        manifest = run()
    except ObjectGone as exc:
        summary["skipped"].append({"key": key, "reason": str(exc)})
        return
    except Exception as exc:
        log.exception("could not score %s", key)
        summary["failed"].append({"key": key, "reason": f"{type(exc).__name__}: {exc}"})
        return
    if manifest.skipped:
        if manifest.complete:
            why = "already scored for this version"
        elif not manifest.retryable:
            why = f"this version already failed and retrying cannot help: {manifest.reason}"
        else:
            why = f"gave up after {manifest.attempts} attempts: {manifest.reason}"
        summary["skipped"].append({"key": key, "reason": f"{why} (see {manifest_key_for(manifest.output_key)})"})
        return
    entry = {
        "key": key,
        "output_key": manifest.output_key,
        "rows_read": manifest.rows_read,
        "rows_scored": manifest.rows_scored,
        "rows_rejected": manifest.rows_rejected,
    }
    if manifest.complete:
        summary["scored"].append(entry)
    else:
        summary["failed"].append({**entry, "reason": manifest.reason})


def _event_objects(event: dict) -> Iterable[tuple[dict, str, str | None]]:
    for record in event.get("Records") or []:
        s3info = record.get("s3") or {}
        obj = s3info.get("object") or {}
        yield record, unquote_plus(obj.get("key", "")), (s3info.get("bucket") or {}).get("name")


def handle_s3_event(
    event: dict, *, s3: Any, settings: Settings, classifier: Any, remaining_ms: RemainingMs
) -> dict:
    """Score every object an S3 notification names; returns `{"scored", "skipped", "failed", "remaining"}`.

    Failures are recorded (and the failed manifest written) rather than raised, so one bad
    file does not make Lambda retry the others; the sweep retries what is worth retrying.
    """
    summary: dict = {"scored": [], "skipped": [], "failed": [], "remaining": []}
    objects = list(_event_objects(event))
    for i, (record, key, bucket) in enumerate(objects):
        if remaining_ms() < settings.sweep_safety_ms:
            summary["remaining"] = [k for _, k, _ in objects[i:]]
            break
        obj = record["s3"]["object"] if key else {}
        event_name = record.get("eventName", "")
        if not key or not bucket:
            summary["skipped"].append({"key": key, "reason": "not an S3 object notification"})
        elif not event_name.startswith("ObjectCreated:"):
            summary["skipped"].append({"key": key, "reason": f"{event_name or 'this event'} is not an upload"})
        elif settings.bucket and bucket != settings.bucket:
            summary["skipped"].append({"key": key, "reason": f"bucket {bucket} is not BUCKET_NAME={settings.bucket}"})
        else:
            ok, reason = is_scoreable_key(key, obj.get("size"), settings)
            if not ok:
                summary["skipped"].append({"key": key, "reason": reason})
                continue
            _record_outcome(
                summary,
                key,
                lambda: score_s3_object(
                    s3, bucket, key, settings=settings, classifier=classifier,
                    etag=obj.get("eTag"), size=obj.get("size"), remaining_ms=remaining_ms,
                ),
            )
    return summary


def sweep_pending(*, s3: Any, settings: Settings, classifier: Any, remaining_ms: RemainingMs) -> dict:
    """Score every scoreable object under INPUT_PREFIX with no settled manifest for its ETag.

    Stops starting new objects when less than SWEEP_SAFETY_MS is left; `remaining` lists the
    keys of the current listing page not reached, `complete` says whether everything was seen.
    """
    if not settings.bucket:
        raise SettingsError("BUCKET_NAME is not set: the sweep needs to know which bucket to list")
    bucket = settings.bucket
    # "skipped" (already settled) becomes a count at the end; "ignored" counts keys never eligible.
    summary: dict = {"scored": [], "skipped": [], "failed": [], "remaining": [], "ignored": 0, "complete": True}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=settings.input_prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not is_scoreable_key(key, obj.get("Size"), settings)[0]:
                summary["ignored"] += 1
            elif not summary["complete"] or remaining_ms() < settings.sweep_safety_ms:
                summary["complete"] = False
                summary["remaining"].append(key)
            else:
                _record_outcome(
                    summary,
                    key,
                    lambda: score_s3_object(
                        s3, bucket, key, settings=settings, classifier=classifier,
                        etag=obj.get("ETag"), size=obj.get("Size"), remaining_ms=remaining_ms,
                    ),
                )
        if not summary["complete"]:
            break
    summary["skipped"] = len(summary["skipped"])
    return summary
