"""Score one S3 object inside one invocation, under its claim: the path for files below INLINE_MAX_BYTES."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any, Callable

from tweetmood import claims, keys
from tweetmood.manifest import FAILED, OutputManifest, utc_now
from tweetmood.readers import read_records, too_large_reason
from tweetmood.scoring import RemainingMs, score_items
from tweetmood.settings import Settings
from tweetmood.storage import ObjectGone
from tweetmood.writers import CONTENT_TYPES

log = logging.getLogger("tweetmood")
JSON = "application/json"


def read_manifest(storage: Any, bucket: str, key: str, settings: Settings) -> OutputManifest | None:
    """The manifest of input `key` (at its key, else at the key versions before the results/ layout used),
    or None when absent or unreadable (then the source is scored again)."""
    for manifest_key in (keys.manifest_key_for(key, settings), keys.legacy_manifest_key_for(key, settings)):
        raw = storage.read_bytes(bucket, manifest_key)
        if raw is None:
            continue
        try:
            return OutputManifest.from_json(raw)
        except (ValueError, TypeError):
            log.warning("manifest s3://%s/%s is unreadable; scoring its source again", bucket, manifest_key)
            return None
    return None


def settled(previous: OutputManifest | None, etag: str | None, settings: Settings) -> bool:
    """True when this source version needs no (more) work: complete, or failed for good."""
    if previous is None or etag is None or previous.source_etag != etag:
        return False
    return previous.complete or not previous.retryable or previous.attempts >= settings.max_attempts


def attempt_number(previous: OutputManifest | None, etag: str | None) -> int:
    """This try's number at source version `etag`: one more than a failed manifest for it says."""
    if previous and previous.source_etag == etag and not previous.complete:
        return previous.attempts + 1
    return 1


def failed_manifest(key: str, settings: Settings, classifier: Any, reason: str, *, retryable: bool) -> OutputManifest:
    """A failed manifest with no rows, naming the reason."""
    now = utc_now()
    return OutputManifest(
        source_key=key, format=settings.output_format, model_version=classifier.version,
        model_sha256=classifier.sha256, started=now, finished=now, status=FAILED, reason=reason, retryable=retryable,
    )


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


def score_s3_object(
    storage: Any,
    bucket: str,
    key: str,
    *,
    settings: Settings,
    classifier: Any,
    etag: str | None = None,
    remaining_ms: RemainingMs | None = None,
    force: bool = False,
    request_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> OutputManifest:
    """Score `s3://bucket/key` into its result key; the manifest is written last.

    Skips (returning the earlier manifest with `skipped=True`) when the manifest already
    names this source ETag and is complete or failed for good; `force` scores anyway.
    Only the holder of the input's claim scores (see `tweetmood.claims`): raises `ClaimHeld`
    when another live run holds it, `ObjectGone` if the object has disappeared. A run that runs
    short of time, or S3 or model trouble, gives a retryable failed manifest (the sweep tries again).
    """
    output_key = keys.output_key_for(key, settings)
    previous = read_manifest(storage, bucket, key, settings)
    if not force and settled(previous, etag.strip('"') if etag else None, settings):
        return dataclasses.replace(previous, skipped=True)
    body, info = storage.get(bucket, key)
    try:
        current = info.etag or (etag.strip('"') if etag else "")
        if not force and settled(previous, current, settings):
            return dataclasses.replace(previous, skipped=True)
        claim = claims.acquire(
            storage, bucket, keys.claim_key_for(key, settings), source_etag=current,
            request_id=request_id or f"local-{uuid.uuid4()}",
            lease_ms=remaining_ms() if remaining_ms is not None else claims.DEFAULT_LEASE_MS, now_ms=_now_ms(clock),
        )
        try:
            if claim.taken_over:
                # The claim's last holder may have finished this version between our read and our claim.
                previous = read_manifest(storage, bucket, key, settings)
                if not force and settled(previous, current, settings):
                    return dataclasses.replace(previous, skipped=True)
            attempts = attempt_number(previous, current)
            manifest = _score_claimed(storage, bucket, key, output_key, body, info.size, settings, classifier,
                                      remaining_ms, attempts)
            manifest = dataclasses.replace(
                manifest, source_bucket=bucket, source_key=key, source_etag=current, source_size=info.size,
                output_key=output_key, attempts=attempts,
            )
            if manifest.retryable and attempts >= settings.max_attempts:
                manifest.retryable = False
                manifest.reason += (
                    f"; gave up after {attempts} attempts (MAX_ATTEMPTS={settings.max_attempts}): "
                    "fix the cause, then upload the file again"
                )
            # A failed manifest also says that any result already there belongs to an earlier version.
            storage.put(bucket, keys.manifest_key_for(key, settings), manifest.to_json(), JSON)
            return manifest
        finally:
            if not claims.release(storage, bucket, claim, now_ms=_now_ms(clock)):
                log.warning("lost the claim %s before releasing it; its lease had run out", claim.key)
    finally:
        body.close()


def _score_claimed(storage, bucket, key, output_key, body, size, settings, classifier, remaining_ms,
                   attempts) -> OutputManifest:
    if size is not None and size > settings.max_object_bytes:
        return failed_manifest(
            key, settings, classifier,
            too_large_reason(key, size, settings.max_object_bytes),
            retryable=False,
        )
    sink = storage.sink(bucket, output_key, CONTENT_TYPES[settings.output_format])
    try:
        manifest, _ = score_items(read_records(body, key, settings), key, classifier, settings, sink,
                                  remaining_ms=remaining_ms, on_row=lambda _: sink.end_row())
        if manifest.complete:
            sink.commit()
        else:
            sink.abort()
        return manifest
    except Exception as exc:  # S3 or model trouble: not the file's fault, so worth another try
        log.exception("scoring s3://%s/%s failed", bucket, key)
        sink.abort()
        return failed_manifest(
            key, settings, classifier,
            f"scoring {key} stopped on {type(exc).__name__}: {exc}; it is tried again "
            f"(attempt {attempts} of {settings.max_attempts})",
            retryable=True,
        )
