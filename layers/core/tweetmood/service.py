"""Event intake, routing and the sweep: which inputs get scored, inline or on the scale-out state machine.

Small inputs (at most INLINE_MAX_BYTES) are scored inside the invocation (`tweetmood.inline`); bigger ones
start the score-file state machine (`tweetmood.scaleout` runs its steps) under a name derived from the
object's version, so a duplicate event is a no-op. A sweep that finds many pending inputs hands them to the
backlog state machine as a list, instead of looping over them in one function.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from urllib.parse import unquote_plus

import orjson

from tweetmood import keys
from tweetmood.claims import ClaimHeld
from tweetmood.inline import attempt_number, read_manifest, score_s3_object, settled
from tweetmood.manifest import OutputManifest
from tweetmood.scaleout import execution_name
from tweetmood.scoring import RemainingMs, score_file, score_stream  # noqa: F401  (the core's public entry points)
from tweetmood.settings import Settings, SettingsError
from tweetmood.storage import ObjectGone

log = logging.getLogger("tweetmood")
BACKLOG_ITEM = "tweetmood_backlog_item"
# A sweep that finds more pending inputs than this hands them to the backlog state machine (when it is set).
BACKLOG_MIN_FILES = 10


class PoisonEvent(ValueError):
    """The event is not something this function can ever handle; raised so it ends in the dead-letter queue."""


def _new_summary() -> dict:
    return {"scored": [], "skipped": [], "failed": [], "in_progress": [], "remaining": [], "started": []}


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
        summary["skipped"].append({"key": key, "reason": why})
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
        summary["failed"].append({**entry, "reason": manifest.reason, "retryable": manifest.retryable})


class Router:
    """Scores an input inline or starts the score-file state machine for it, by size."""

    def __init__(self, *, storage: Any, settings: Settings, classifier: Any, machines: Any = None,
                 remaining_ms: RemainingMs | None = None, request_id: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.storage, self.settings, self.classifier, self.machines = storage, settings, classifier, machines
        self.remaining_ms, self.request_id, self.clock = remaining_ms, request_id, clock
        if settings.state_machine_arn and machines is None:
            raise SettingsError("STATE_MACHINE_ARN is set but no Step Functions client was passed in")

    def route(self, summary: dict, bucket: str, key: str, etag: str | None, size: int | None,
              version_id: str | None = None) -> None:
        """Score `key` inline, or start its scale-out run when it is over INLINE_MAX_BYTES; file the outcome."""
        if self.settings.state_machine_arn and size is not None and size > self.settings.inline_max_bytes:
            self._start_run(summary, bucket, key, etag, size, version_id)
            return
        _record_outcome(summary, key, lambda: score_s3_object(
            self.storage, bucket, key, settings=self.settings, classifier=self.classifier, etag=etag,
            remaining_ms=self.remaining_ms, request_id=self.request_id, clock=self.clock,
        ))

    def _start_run(self, summary: dict, bucket: str, key: str, etag: str | None, size: int,
                   version_id: str | None) -> None:
        etag = etag.strip('"') if etag else ""
        previous = read_manifest(self.storage, bucket, key, self.settings)
        if settled(previous, etag, self.settings):
            summary["skipped"].append({"key": key, "reason": "already scored for this version"})
            return
        name = execution_name(bucket, key, etag, version_id, attempt_number(previous, etag))
        payload = {"bucket": bucket, "key": key, "etag": etag, "version_id": version_id, "run_id": name}
        started = self.machines.start(self.settings.state_machine_arn, name, payload)
        summary["started"].append({"key": key, "execution": name, "size": size, "already_running": not started})


def _event_objects(event: dict) -> Iterable[tuple[dict, str, str | None]]:
    for record in event.get("Records") or []:
        s3info = record.get("s3") or {}
        obj = s3info.get("object") or {}
        yield record, unquote_plus(obj.get("key", "")), (s3info.get("bucket") or {}).get("name")


def handle_s3_event(
    event: dict, *, storage: Any, settings: Settings, classifier: Any, remaining_ms: RemainingMs,
    request_id: str | None = None, clock: Callable[[], float] = time.time, machines: Any = None,
) -> dict:
    """Score (or hand to the state machine) every object an S3 notification names, or the one backlog item
    `{"tweetmood_backlog_item": {"bucket","key","etag","size"}}`; returns
    `{"scored", "skipped", "failed", "in_progress", "remaining", "started"}`.

    Failures are recorded (and the failed manifest written) rather than raised, so one bad
    file does not make Lambda retry the others; each `failed` entry says whether another try
    may help (`retryable`). `in_progress` lists objects another delivery is scoring; `started`
    the scale-out runs started (or found already running). Raises `PoisonEvent` for an event
    that is neither (S3's own s3:TestEvent is skipped).
    """
    summary = _new_summary()
    router = Router(storage=storage, settings=settings, classifier=classifier, machines=machines,
                    remaining_ms=remaining_ms, request_id=request_id, clock=clock)
    if isinstance(event, dict) and isinstance(event.get(BACKLOG_ITEM), dict):
        item = event[BACKLOG_ITEM]
        objects = [({"eventName": "ObjectCreated:Backlog", "s3": {"object": {"eTag": item.get("etag"),
                                                                             "size": item.get("size")}}},
                    item.get("key", ""), item.get("bucket"))]
    elif not isinstance(event, dict) or not isinstance(event.get("Records"), list) or not event["Records"]:
        if isinstance(event, dict) and event.get("Event") == "s3:TestEvent":
            summary["skipped"].append({"key": "", "reason": "s3:TestEvent, sent when the notification was set up"})
            return summary
        shape = sorted(event)[:8] if isinstance(event, dict) else type(event).__name__
        raise PoisonEvent(
            f"the event has no Records, so it is not an S3 notification (it has {shape}); "
            "send score_object only s3:ObjectCreated notifications or backlog items; scheduled runs go to sweep_pending"
        )
    else:
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
            ok, reason = keys.is_scoreable_key(key, obj.get("size"), settings)
            if not ok:
                summary["skipped"].append({"key": key, "reason": reason})
                continue
            router.route(summary, bucket, key, obj.get("eTag"), obj.get("size"), obj.get("versionId"))
    return summary


def sweep_pending(
    *, storage: Any, settings: Settings, classifier: Any, remaining_ms: RemainingMs, request_id: str | None = None,
    clock: Callable[[], float] = time.time, machines: Any = None,
) -> dict:
    """Find every scoreable object under INPUT_PREFIX with no settled manifest for its ETag and score it
    (inline or on the state machine, by size); with more than BACKLOG_MIN_FILES pending and
    BACKLOG_STATE_MACHINE_ARN set, hand the list to the backlog state machine instead (`backlog`).

    Stops starting new objects when less than SWEEP_SAFETY_MS is left; `remaining` lists the
    keys not reached, `complete` says whether everything was seen.
    """
    if not settings.bucket:
        raise SettingsError("BUCKET_NAME is not set: the sweep needs to know which bucket to list")
    bucket = settings.bucket
    router = Router(storage=storage, settings=settings, classifier=classifier, machines=machines,
                    remaining_ms=remaining_ms, request_id=request_id, clock=clock)
    # "skipped" (already settled) becomes a count at the end; "ignored" counts keys never eligible.
    summary: dict = {**_new_summary(), "ignored": 0, "complete": True, "backlog": None}
    pending = []
    for obj in storage.list(bucket, settings.input_prefix):
        if not keys.is_scoreable_key(obj.key, obj.size, settings)[0]:
            summary["ignored"] += 1
        elif settled(read_manifest(storage, bucket, obj.key, settings), obj.etag, settings):
            summary["skipped"].append({"key": obj.key, "reason": "already scored for this version"})
        else:
            pending.append(obj)
    if settings.backlog_state_machine_arn and len(pending) > BACKLOG_MIN_FILES:
        summary["backlog"] = _start_backlog(storage, settings, machines, bucket, pending, clock)
        summary["skipped"] = len(summary["skipped"])
        return summary
    for i, obj in enumerate(pending):
        if remaining_ms() < settings.sweep_safety_ms:
            summary["complete"] = False
            summary["remaining"] = [o.key for o in pending[i:]]
            break
        router.route(summary, bucket, obj.key, obj.etag, obj.size)
    summary["skipped"] = len(summary["skipped"])
    return summary


def _start_backlog(storage: Any, settings: Settings, machines: Any, bucket: str, pending: list,
                   clock: Callable[[], float]) -> dict:
    """Write the pending keys as a JSON array the backlog machine's Distributed Map reads, and start it."""
    if machines is None:
        raise SettingsError("BACKLOG_STATE_MACHINE_ARN is set but no Step Functions client was passed in")
    stamp = datetime.fromtimestamp(clock(), timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    items = [{"bucket": bucket, "key": o.key, "etag": o.etag, "size": o.size} for o in pending]
    backlog_key = keys.backlog_key_for(stamp, settings)
    storage.put(bucket, backlog_key, orjson.dumps(items), "application/json")
    name = f"backlog-{stamp}"
    started = machines.start(settings.backlog_state_machine_arn, name,
                             {"bucket": bucket, "backlog_key": backlog_key, "files": len(items)})
    return {"execution": name, "backlog_key": backlog_key, "files": len(items), "already_running": not started}
