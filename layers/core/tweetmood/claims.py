"""Claims: one S3 object per input saying who scores which source version, and until when.

`keys.claim_key_for(key)` is only ever written conditionally: created with `IfNoneMatch="*"`, then
replaced with `IfMatch=<its ETag>`. Two deliveries of one upload cannot both hold it, and a holder
that lost it (its lease ran out and another run took over) cannot overwrite it. Claims are never
deleted (the functions' role may not delete outside staging): a released or expired claim is taken
over, and the manifest, not the claim, says whether a result is complete. Files too big to score
inline go to the scale-out state machine, whose execution name (not a claim) makes a duplicate a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

RUNNING, RELEASED = "running", "released"
# A claim lives as long as its holder's Lambda may run; on top of that, this much for clocks
# of different hosts that disagree, so a live holder is never taken over.
CLOCK_SKEW_MS = 30_000
# The longest a Lambda may run: the lease of a holder that has no deadline (the CLI).
DEFAULT_LEASE_MS = 900_000


@dataclass
class Claim:
    """A claim this run holds; `etag` is the claim object's, and every later write is conditional on it."""

    key: str
    etag: str
    source_etag: str
    request_id: str
    taken_over: bool = False
    """The claim object existed (released or expired): a result may have been finished meanwhile."""


class ClaimHeld(Exception):
    """Another live run holds the claim: this delivery backs off (not an error; the holder finishes)."""


def _body(state: str, source_etag: str, request_id: str, expires_ms: int) -> bytes:
    return orjson.dumps(
        {"state": state, "source_etag": source_etag, "request_id": request_id, "expires_ms": expires_ms}
    ) + b"\n"


def acquire(
    storage: Any, bucket: str, key: str, *, source_etag: str, request_id: str, lease_ms: int, now_ms: int
) -> Claim:
    """Take the claim at `key` for `source_etag` until `now_ms + lease_ms`, or raise `ClaimHeld`.

    A released or expired claim is taken over; a live one, whoever holds it and for whichever
    version, is left alone.
    """
    expires = now_ms + lease_ms
    etag = storage.put(bucket, key, _body(RUNNING, source_etag, request_id, expires), "application/json",
                       if_none_match=True)
    if etag is not None:
        return Claim(key, etag, source_etag, request_id)
    body, info = storage.get(bucket, key)
    try:
        held = orjson.loads(body.read())
    except orjson.JSONDecodeError:
        held = {}  # unreadable: nobody can be relying on it
    finally:
        body.close()
    if held.get("state") == RUNNING and int(held.get("expires_ms", 0)) + CLOCK_SKEW_MS > now_ms:
        who = held.get("request_id", "another run")
        if held.get("source_etag") == source_etag:
            raise ClaimHeld(f"{who} is scoring this version; this delivery leaves it to that run")
        raise ClaimHeld(
            f"{who} is scoring an earlier version (ETag {held.get('source_etag')}); the sweep scores this one after it"
        )
    etag = storage.put(bucket, key, _body(RUNNING, source_etag, request_id, expires), "application/json",
                       if_match=f'"{info.etag}"')
    if etag is None:
        raise ClaimHeld("another delivery took over the claim first; this one leaves the file to it")
    return Claim(key, etag, source_etag, request_id, taken_over=True)


def release(storage: Any, bucket: str, claim: Claim, *, now_ms: int) -> bool:
    """Give the claim up; False if it was lost meanwhile."""
    etag = storage.put(bucket, claim.key, _body(RELEASED, claim.source_etag, claim.request_id, now_ms),
                       "application/json", if_match=claim.etag)
    if etag is None:
        return False
    claim.etag = etag
    return True
