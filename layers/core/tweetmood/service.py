"""The one scoring code path: streams in, results and a manifest out. Lambda handlers and the CLI call this."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator
from urllib.parse import unquote_plus

from tweetmood import claims
from tweetmood.batching import scored_in_order
from tweetmood.claims import Checkpoint, ClaimHeld, claim_key_for
from tweetmood.manifest import COMPLETE, FAILED, IN_PROGRESS, OutputManifest, utc_now
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
# S3's smallest part but the last: a checkpoint uploads what it has buffered once it is this big.
MIN_PART_SIZE = 5 << 20
# S3 refuses longer keys; the longest key written for an input is its manifest's.
S3_MAX_KEY_BYTES = 1024


class ObjectGone(Exception):
    """The object named by an event no longer exists (deleted or renamed before it was scored)."""


class PoisonEvent(ValueError):
    """The event is not something this function can ever handle; raised so it ends in the dead-letter queue."""


class CheckpointMismatch(RuntimeError):
    """A checkpoint does not fit the source it was taken on; the file is scored again from the start."""


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
    longest = len(manifest_key_for(output_key_for(key, settings)).encode("utf-8"))
    if longest > S3_MAX_KEY_BYTES:
        limit = len(key.encode("utf-8")) - (longest - S3_MAX_KEY_BYTES)
        return False, (
            f"{key[:60]}… is too long: its result's manifest key would be {longest} bytes, over S3's "
            f"{S3_MAX_KEY_BYTES}; rename it to at most {limit} bytes (UTF-8)"
        )
    return True, ""


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


# --- the core loop -------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """Running totals of a scoring run: rows written so far and what they were."""

    rows: int = 0
    labels: Counter = dataclasses.field(default_factory=Counter)
    errors: Counter = dataclasses.field(default_factory=Counter)

    def copy(self) -> "Progress":
        return Progress(self.rows, Counter(self.labels), Counter(self.errors))


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


def _skip(items: Iterator[Record | Rejected], n: int, name: str) -> Iterator[Record | Rejected]:
    """Read past the `n` rows an earlier invocation already wrote (their bytes are read again, not kept)."""
    it = iter(items)
    for seen in range(n):
        if next(it, None) is None:
            raise CheckpointMismatch(f"{name} has {seen} rows, fewer than the {n} its checkpoint says were scored")
    yield from it


class _Gate(io.RawIOBase):
    """Passes writes to `sink` once opened; before, drops them (a resumed CSV's header is already uploaded)."""

    def __init__(self, sink: BinaryIO):
        super().__init__()
        self._sink, self.open = sink, False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.open:
            self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        self._sink.flush()


def _score_rows(
    stream: BinaryIO,
    name: str,
    classifier: Any,
    settings: Settings,
    sink: BinaryIO,
    remaining_ms: RemainingMs | None,
    start: Progress | None,
    on_row: Callable[[Progress], None] | None,
) -> tuple[OutputManifest, _Stop]:
    started, t0 = utc_now(), time.perf_counter()
    model_s0 = getattr(classifier, "model_seconds", 0.0)
    progress = start.copy() if start else Progress()
    already_scored = sum(progress.labels.values())
    stop = _Stop()
    items: Iterator[Record | Rejected] = read_records(stream, name, settings)
    if progress.rows:
        items = _skip(items, progress.rows, name)
    items = _guarded(items, stop, name, remaining_ms, settings.sweep_safety_ms)
    gate = _Gate(sink)
    gate.open = not progress.rows
    writer = make_writer(settings.output_format, gate, classifier.labels, classifier.version)
    gate.open = True
    try:
        for item, probs in scored_in_order(items, classifier.predict_proba, settings.batch_size,
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
    labels = {label: progress.labels[label] for label in classifier.labels}
    labels.update({k: v for k, v in progress.labels.items() if k not in labels})
    manifest = OutputManifest(
        source_key=name,
        format=settings.output_format,
        rows_read=scored + rejected,
        rows_scored=scored,
        rows_rejected=rejected,
        label_counts=labels,
        error_counts=dict(sorted(progress.errors.items())),
        model_version=classifier.version,
        model_sha256=classifier.sha256,
        started=started,
        finished=utc_now(),
        duration_s=round(duration, 3),
        tweets_per_s=round((scored - already_scored) / duration, 1) if duration > 0 else 0.0,
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
    start: Progress | None = None,
    on_row: Callable[[Progress], None] | None = None,
) -> OutputManifest:
    """Read `stream` (named `name`), score it with `classifier`, write result rows to `sink`.

    Returns the manifest (source bucket/ETag left for the caller). A whole-file failure gives
    status "failed" with the reason; rows read before it are still scored and counted.
    `start` resumes a run: its rows are read past (not written again) and its counts carried on;
    `on_row` sees the running totals after every row written.
    """
    return _score_rows(stream, name, classifier, settings, sink, remaining_ms, start, on_row)[0]


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
    """The manifest at `key`, or None when absent or unreadable (then the source is scored again).

    Existence is checked by listing, not by a GetObject that may fail: without an unconditioned
    s3:ListBucket (the functions' listing is limited to their prefixes), S3 answers a GetObject of
    a missing key with 403 AccessDenied, not 404.
    """
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    # Keys sort by bytes, so the manifest itself comes before any longer key it is a prefix of.
    if [o["Key"] for o in listing.get("Contents", [])] != [key]:
        return None
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


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


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
    request_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> OutputManifest:
    """Score `s3://bucket/key` into the output prefix; the manifest is written last.

    Skips (returning the earlier manifest with `skipped=True`) when the manifest already
    names this source ETag and is complete or failed for good; `force` scores anyway.
    Only the holder of the output's claim scores (see `tweetmood.claims`): raises `ClaimHeld`
    when another live run holds it, `ObjectGone` if the object has disappeared. When time runs
    out mid-file the run checkpoints and returns a manifest with status "in_progress" (not
    written); the next run (the sweep) goes on from there. Other failures become a failed manifest.
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
    try:
        current = _etag(response.get("ETag")) or _etag(etag) or ""
        size = response.get("ContentLength", size)
        if not force and _settled(previous, current, settings):
            return dataclasses.replace(previous, skipped=True)
        claim = claims.acquire(
            s3, bucket, claim_key_for(output_key), source_etag=current,
            request_id=request_id or f"local-{uuid.uuid4()}",
            lease_ms=remaining_ms() if remaining_ms is not None else claims.DEFAULT_LEASE_MS, now_ms=_now_ms(clock),
        )
        if claim.taken_over:
            # The claim's last holder may have finished this version between our read and our claim.
            previous = read_manifest(s3, bucket, manifest_key)
            if not force and _settled(previous, current, settings):
                claims.release(s3, bucket, claim, now_ms=_now_ms(clock), checkpoint=claim.checkpoint)
                return dataclasses.replace(previous, skipped=True)
        run = _ClaimedRun(s3, bucket, key, output_key, claim, settings, classifier, clock)
        try:
            return run.score(body, size, previous, remaining_ms)
        except BaseException:
            run.release_quietly()  # so the next delivery need not wait for the lease to run out
            raise
    finally:
        body.close()


class _ClaimedRun:
    """One run on a claimed output: score, then complete, checkpoint or fail, and give the claim back."""

    def __init__(self, s3, bucket, key, output_key, claim, settings, classifier, clock):
        self.s3, self.bucket, self.key, self.output_key = s3, bucket, key, output_key
        self.claim, self.settings, self.classifier, self.clock = claim, settings, classifier, clock
        self.released = False
        checkpoint = claim.checkpoint
        if checkpoint and checkpoint.model_version != classifier.version:
            log.warning("%s: checkpoint was taken with model %s, not %s; scoring from the start",
                        key, checkpoint.model_version, classifier.version)
            self._abort_upload(checkpoint.upload_id)
            checkpoint = None
        if claim.stale_upload_id:
            self._abort_upload(claim.stale_upload_id)
        self.checkpoint = checkpoint
        self.start = (
            Progress(checkpoint.rows_done, Counter(checkpoint.label_counts), Counter(checkpoint.error_counts))
            if checkpoint else Progress()
        )
        self.latest = self.start.copy()
        self.durable = self.start.copy()  # what the uploaded parts hold
        self.sink = MultipartSink(
            s3, bucket, output_key, CONTENT_TYPES[settings.output_format],
            upload_id=checkpoint.upload_id if checkpoint else None, parts=checkpoint.parts if checkpoint else (),
        )

    def _abort_upload(self, upload_id: str | None) -> None:
        if upload_id:
            try:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.output_key, UploadId=upload_id)
            except Exception:  # the bucket's lifecycle rule cleans up what this misses
                log.warning("could not abort the stale upload %s of %s", upload_id, self.output_key, exc_info=True)

    def _on_row(self, progress: Progress) -> None:
        self.latest = progress
        if self.sink.end_row():
            self.durable = progress.copy()

    def score(self, body: BinaryIO, size: int | None, previous: OutputManifest | None,
              remaining_ms: RemainingMs | None) -> OutputManifest:
        settings, current = self.settings, self.claim.source_etag
        attempts = previous.attempts + 1 if previous and previous.source_etag == current and not previous.complete else 1
        stop_code = None
        try:
            if size is not None and size > settings.max_object_bytes:
                manifest = self._failed(
                    f"{self.key} is {size} bytes, more than MAX_OBJECT_BYTES={settings.max_object_bytes}; "
                    "split it into smaller files",
                    retryable=False,
                )
            else:
                manifest, stop = _score_rows(body, self.key, self.classifier, settings, self.sink, remaining_ms,
                                             self.start, self._on_row)
                stop_code = stop.error.code if stop.error else None
                if manifest.complete:
                    self.sink.commit()
        except Exception as exc:  # S3 or model trouble: not the file's fault, so worth another try
            log.exception("scoring s3://%s/%s failed", self.bucket, self.key)
            if isinstance(exc, CheckpointMismatch) or "NoSuchUpload" in str(exc):
                self.durable = Progress()  # the checkpoint cannot be trusted: start over
            manifest = self._failed(
                f"scoring {self.key} stopped on {type(exc).__name__}: {exc}; it is tried again "
                f"(attempt {attempts} of {settings.max_attempts})",
                retryable=True,
            )
        manifest = dataclasses.replace(
            manifest, source_bucket=self.bucket, source_key=self.key, source_etag=current, source_size=size,
            output_key=self.output_key, attempts=attempts,
        )
        if self.checkpoint:  # totals over every invocation that worked on this version
            duration = self.checkpoint.duration_s + manifest.duration_s
            manifest.started = self.checkpoint.started or manifest.started
            manifest.duration_s = round(duration, 3)
            manifest.invocations = self.checkpoint.invocations + 1
            manifest.tweets_per_s = round(manifest.rows_scored / duration, 1) if duration > 0 else 0.0
        if manifest.complete:
            self._write_manifest(manifest)
            self._release(None)
            return manifest
        if stop_code == "out_of_time":
            kept = self._checkpoint(manifest)
            if kept is not None:
                self._release(kept)
                return dataclasses.replace(
                    manifest, status=IN_PROGRESS, rows_read=kept.rows_done,
                    rows_scored=sum(kept.label_counts.values()), rows_rejected=sum(kept.error_counts.values()),
                    label_counts=kept.label_counts, error_counts=kept.error_counts,
                    reason=f"{self.key}: {kept.rows_done} rows scored in {kept.invocations} invocation(s) so far; "
                    f"the Lambda was about to time out, so the next sweep goes on from the checkpoint in {self.claim.key}",
                )
        return self._fail(manifest, attempts)

    def _checkpoint(self, manifest: OutputManifest) -> Checkpoint | None:
        """Upload what is buffered (if S3 takes a part that small) and describe it; None if no row was gained."""
        if self.sink.flush_part(MIN_PART_SIZE):
            self.durable = self.latest.copy()
        before = self.checkpoint.rows_done if self.checkpoint else 0
        if self.durable.rows <= before:
            return None
        return self._describe(manifest)

    def _describe(self, manifest: OutputManifest) -> Checkpoint | None:
        if not self.durable.rows or self.sink.upload_id is None:
            return None
        return Checkpoint(
            source_etag=self.claim.source_etag, upload_id=self.sink.upload_id, parts=list(self.sink.parts),
            rows_done=self.durable.rows, label_counts=dict(self.durable.labels), error_counts=dict(self.durable.errors),
            started=manifest.started, duration_s=manifest.duration_s, model_version=self.classifier.version,
            invocations=manifest.invocations,
        )

    def _fail(self, manifest: OutputManifest, attempts: int) -> OutputManifest:
        if manifest.retryable and attempts >= self.settings.max_attempts:
            manifest.retryable = False
            manifest.reason += (
                f"; gave up after {attempts} attempts (MAX_ATTEMPTS={self.settings.max_attempts}): "
                "fix the cause, then upload the file again"
            )
        kept = self._describe(manifest) if manifest.retryable else None
        if kept is None:
            self.sink.abort()
        # Any output already there belongs to an earlier version: this manifest says it is not this one's.
        self._write_manifest(manifest)
        self._release(kept)
        return manifest

    def _failed(self, reason: str, *, retryable: bool) -> OutputManifest:
        return _failed(self.key, self.settings, self.classifier, reason, retryable=retryable)

    def _write_manifest(self, manifest: OutputManifest) -> None:
        self.s3.put_object(
            Bucket=self.bucket, Key=manifest_key_for(self.output_key), Body=manifest.to_json(),
            ContentType="application/json",
        )

    def _release(self, checkpoint: Checkpoint | None) -> None:
        if not claims.release(self.s3, self.bucket, self.claim, now_ms=_now_ms(self.clock), checkpoint=checkpoint):
            log.warning("lost the claim %s before releasing it; its lease had run out", self.claim.key)
        self.released = True

    def release_quietly(self) -> None:
        """After an unexpected error: give the claim back, keeping the last checkpoint we know to be good."""
        if self.released:
            return
        try:
            cp = self.checkpoint
            so_far = (
                OutputManifest(started=cp.started, duration_s=cp.duration_s, invocations=cp.invocations)
                if cp else OutputManifest()
            )
            self._release(self._describe(so_far))
        except Exception:
            log.warning("could not release the claim %s; it expires with its lease", self.claim.key, exc_info=True)


class MultipartSink(io.RawIOBase):
    """A write-only stream into one S3 object that becomes visible only on `commit()`.

    Output goes up in parts of at least `part_size`, cut only at row boundaries (`end_row()`),
    so neither memory nor /tmp (512 MB by default on Lambda) limits the output size and a
    checkpoint can name the rows its parts hold; `abort()` discards the parts. An upload left by
    an earlier invocation goes on from `upload_id` and `parts`. A bucket lifecycle rule should
    abort incomplete uploads left by a killed invocation.
    """

    def __init__(
        self, s3: Any, bucket: str, key: str, content_type: str, part_size: int | None = None, *,
        upload_id: str | None = None, parts: Iterable[dict] = (),
    ):
        super().__init__()
        self._s3, self._bucket, self._key, self._type = s3, bucket, key, content_type
        self._part_size = part_size or PART_SIZE
        self._buffer = bytearray()
        self._parts: list[dict] = [dict(p) for p in parts]
        self._upload_id = upload_id
        self._done = False

    @property
    def upload_id(self) -> str | None:
        return self._upload_id

    @property
    def parts(self) -> list[dict]:
        return self._parts

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        return len(data)

    def end_row(self) -> bool:
        """A row ends here: upload the buffer as a part if it is big enough; True if it did."""
        return self.flush_part(self._part_size)

    def flush_part(self, min_size: int) -> bool:
        """Upload the buffer as one part if it holds at least `min_size` bytes; True if it did."""
        if not self._buffer or len(self._buffer) < min_size:
            return False
        self._upload_part(bytes(self._buffer))
        self._buffer.clear()
        return True

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


def _new_summary() -> dict:
    return {"scored": [], "skipped": [], "failed": [], "in_progress": [], "remaining": []}


def _record_outcome(summary: dict, key: str, run: Callable[[], OutputManifest]) -> None:
    """File the outcome of one object under scored, skipped, failed (with `retryable`) or in_progress."""
    try:
        manifest = run()
    except ObjectGone as exc:
        summary["skipped"].append({"key": key, "reason": str(exc)})
        return
    except ClaimHeld as exc:
        summary["in_progress"].append({"key": key, "reason": str(exc)})
        return
    except Exception as exc:
        log.exception("could not score %s", key)
        summary["failed"].append({"key": key, "reason": f"{type(exc).__name__}: {exc}", "retryable": True})
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
    elif manifest.status == IN_PROGRESS:
        summary["in_progress"].append({**entry, "reason": manifest.reason})
    else:
        summary["failed"].append({**entry, "reason": manifest.reason, "retryable": manifest.retryable})


def _event_objects(event: dict) -> Iterable[tuple[dict, str, str | None]]:
    for record in event.get("Records") or []:
        s3info = record.get("s3") or {}
        obj = s3info.get("object") or {}
        yield record, unquote_plus(obj.get("key", "")), (s3info.get("bucket") or {}).get("name")


def handle_s3_event(
    event: dict, *, s3: Any, settings: Settings, classifier: Any, remaining_ms: RemainingMs,
    request_id: str | None = None, clock: Callable[[], float] = time.time,
) -> dict:
    """Score every object an S3 notification names; returns
    `{"scored", "skipped", "failed", "in_progress", "remaining"}`.

    Failures are recorded (and the failed manifest written) rather than raised, so one bad
    file does not make Lambda retry the others; each `failed` entry says whether another try
    may help (`retryable`). `in_progress` lists objects another delivery is scoring or that
    were checkpointed for the sweep. Raises `PoisonEvent` for an event that is not an S3
    notification at all (S3's own s3:TestEvent is skipped).
    """
    summary = _new_summary()
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list) or not event["Records"]:
        if isinstance(event, dict) and event.get("Event") == "s3:TestEvent":
            summary["skipped"].append({"key": "", "reason": "s3:TestEvent, sent when the notification was set up"})
            return summary
        shape = sorted(event)[:8] if isinstance(event, dict) else type(event).__name__
        raise PoisonEvent(
            f"the event has no Records, so it is not an S3 notification (it has {shape}); "
            "send score_object only s3:ObjectCreated notifications; scheduled runs go to sweep_pending"
        )
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
                    request_id=request_id, clock=clock,
                ),
            )
    return summary


def sweep_pending(
    *, s3: Any, settings: Settings, classifier: Any, remaining_ms: RemainingMs, request_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> dict:
    """Score every scoreable object under INPUT_PREFIX with no settled manifest for its ETag,
    going on from checkpoints that runs short of time left.

    Stops starting new objects when less than SWEEP_SAFETY_MS is left; `remaining` lists the
    keys of the current listing page not reached, `complete` says whether everything was seen.
    """
    if not settings.bucket:
        raise SettingsError("BUCKET_NAME is not set: the sweep needs to know which bucket to list")
    bucket = settings.bucket
    # "skipped" (already settled) becomes a count at the end; "ignored" counts keys never eligible.
    summary: dict = {**_new_summary(), "ignored": 0, "complete": True}
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
                        request_id=request_id, clock=clock,
                    ),
                )
        if not summary["complete"]:
            break
    summary["skipped"] = len(summary["skipped"])
    return summary
