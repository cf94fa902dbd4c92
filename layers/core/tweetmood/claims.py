"""Claims: one S3 object per output saying who scores which source version, until when, and how far it got.

`<output key>.claim` is only ever written conditionally: created with `IfNoneMatch="*"`, then
replaced with `IfMatch=<its ETag>`. Two deliveries of one upload cannot both hold it, a holder
that lost it (its lease ran out and another run took over) cannot overwrite it, and a checkpoint
travels in the same atomic write that releases the claim. Claims are never deleted (the
functions' role may not delete): a released or expired claim is taken over, and the manifest,
not the claim, says whether a result is complete.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import ClientError

CLAIM_SUFFIX = ".claim"
RUNNING, RELEASED = "running", "released"
# A claim lives as long as its holder's Lambda may run; on top of that, this much for clocks
# of different hosts that disagree, so a live holder is never taken over.
CLOCK_SKEW_MS = 30_000
# The longest a Lambda may run: the lease of a holder that has no deadline (the CLI).
DEFAULT_LEASE_MS = 900_000
_CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def claim_key_for(output_key: str) -> str:
    """The claim sits beside its output: `<output_key>.claim`."""
    return output_key + CLAIM_SUFFIX


@dataclass
class Checkpoint:
    """How far an unfinished run got: enough for the next invocation to go on without losing or repeating rows.

    Every row up to `rows_done` is in the uploaded `parts` of multipart upload `upload_id`
    (rows are never split across parts); the next run re-reads the source, skips that many
    rows and uploads parts numbered after the last.
    """

    source_etag: str
    upload_id: str | None
    parts: list[dict] = field(default_factory=list)
    rows_done: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    error_counts: dict[str, int] = field(default_factory=dict)
    started: str = ""
    duration_s: float = 0.0
    invocations: int = 1
    model_version: str = ""
    """A checkpoint is resumed only by the same model: rows must not mix two models' scores."""

    @classmethod
    def from_dict(cls, raw: dict) -> "Checkpoint":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class Claim:
    """A claim this run holds; `etag` is the claim object's, and every later write is conditional on it."""

    key: str
    etag: str
    source_etag: str
    request_id: str
    checkpoint: Checkpoint | None = None
    """The checkpoint left by an earlier run for this source version, to resume from."""
    taken_over: bool = False
    """The claim object existed (released or expired): a result may have been finished meanwhile."""
    stale_upload_id: str | None = None
    """A multipart upload left by a run on an older source version, to abort."""


class ClaimHeld(Exception):
    """Another live run holds the claim: this delivery backs off (not an error; the holder finishes)."""


def _is_conflict(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in _CONFLICTS or status in ("412", "409")


def _body(state: str, source_etag: str, request_id: str, expires_ms: int, checkpoint: Checkpoint | None) -> bytes:
    return orjson.dumps(
        {
            "state": state,
            "source_etag": source_etag,
            "request_id": request_id,
            "expires_ms": expires_ms,
            "checkpoint": dataclasses.asdict(checkpoint) if checkpoint else None,
        },
        option=orjson.OPT_INDENT_2,
    ) + b"\n"


def _put(s3: Any, bucket: str, key: str, body: bytes, **condition: str) -> str | None:
    """Write the claim if `condition` holds; its new ETag, or None when the condition failed."""
    try:
        response = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition)
    except ClientError as exc:
        if _is_conflict(exc):
            return None
        raise
    return response["ETag"]


def acquire(
    s3: Any, bucket: str, key: str, *, source_etag: str, request_id: str, lease_ms: int, now_ms: int
) -> Claim:
    """Take the claim at `key` for `source_etag` until `now_ms + lease_ms`, or raise `ClaimHeld`.

    A released or expired claim is taken over (keeping its checkpoint if it is for the same
    source version); a live one, whoever holds it and for whichever version, is left alone.
    """
    expires = now_ms + lease_ms
    etag = _put(s3, bucket, key, _body(RUNNING, source_etag, request_id, expires, None), IfNoneMatch="*")
    if etag is not None:
        return Claim(key, etag, source_etag, request_id)
    found = s3.get_object(Bucket=bucket, Key=key)
    try:
        held = orjson.loads(found["Body"].read())
    except orjson.JSONDecodeError:
        held = {}  # unreadable: nobody can be relying on it
    if held.get("state") == RUNNING and int(held.get("expires_ms", 0)) + CLOCK_SKEW_MS > now_ms:
        who = held.get("request_id", "another run")
        if held.get("source_etag") == source_etag:
            raise ClaimHeld(f"{who} is scoring this version; this delivery leaves it to that run")
        raise ClaimHeld(
            f"{who} is scoring an earlier version (ETag {held.get('source_etag')}); the sweep scores this one after it"
        )
    raw = held.get("checkpoint")
    previous = Checkpoint.from_dict(raw) if isinstance(raw, dict) else None
    checkpoint = previous if previous and previous.source_etag == source_etag else None
    stale_upload = previous.upload_id if previous and checkpoint is None else None
    # The running claim keeps the checkpoint: if this run dies without a word, the next one still resumes.
    etag = _put(s3, bucket, key, _body(RUNNING, source_etag, request_id, expires, checkpoint), IfMatch=found["ETag"])
    if etag is None:
        raise ClaimHeld("another delivery took over the claim first; this one leaves the file to it")
    return Claim(key, etag, source_etag, request_id, checkpoint, taken_over=True, stale_upload_id=stale_upload)


def release(s3: Any, bucket: str, claim: Claim, *, now_ms: int, checkpoint: Checkpoint | None = None) -> bool:
    """Give the claim up, leaving `checkpoint` for the next run; False if it was lost meanwhile."""
    body = _body(RELEASED, claim.source_etag, claim.request_id, now_ms, checkpoint)
    etag = _put(s3, bucket, claim.key, body, IfMatch=claim.etag)
    if etag is None:
        return False
    claim.etag = etag
    return True
