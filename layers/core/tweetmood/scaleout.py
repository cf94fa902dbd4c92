"""Scale-out of one input: plan record-aligned chunks, score one chunk, merge the parts in order (or fail the run).

The same three steps run on Step Functions (PlanRun → Distributed Map of ScoreChunk → MergeRun) and on a
laptop's process pool (`tweetmood score --workers N`): only the storage passed in differs.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from tweetmood.settings import Settings

EXECUTION_NAME_MAX = 80
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


class PartsMissing(RuntimeError):
    """The merge found parts absent, extra or with counts that do not add up to the plan; the run fails."""


def plan_run(storage: Any, settings: Settings, *, bucket: str, key: str, etag: str, run_id: str) -> dict:
    """Stream the object once; cut record-aligned chunks; write the plan (a JSON ARRAY of chunk items) to
    `<staging prefix of run_id>/plan.json`; gz sources are gunzipped once to staging first.

    Returns {"bucket","key","etag","run_id","plan_key","chunks": n}. One chunk item is self-contained:
    {"run_id","bucket","key","source_key","etag","index","start","end","first_line","format","header","text_column"}
    """
    raise NotImplementedError("plan_run: being written on branch issue-12")


def score_chunk(storage: Any, classifier: Any, settings: Settings, item: dict) -> dict:
    """Ranged GET of item's bytes, score with the existing core, write part `<staging>/parts/<index:06d>`
    (overwritten on retry). Returns counts only: {"index","rows","scored","rejected"}."""
    raise NotImplementedError("score_chunk: being written on branch issue-12")


def merge_run(storage: Any, settings: Settings, run: dict) -> dict:
    """`run` is plan_run's return value. Check parts against the plan (all present, counts add up) else raise
    PartsMissing; concatenate in input order (UploadPartCopy if parts >= 5 MiB else streamed), write the manifest
    with summed counts, delete staging.

    Returns {"status","rows_read","rows_scored","rows_rejected","output_key","manifest_key"}."""
    raise NotImplementedError("merge_run: being written on branch issue-12")


def fail_run(storage: Any, settings: Settings, run: dict, error: str, cause: str) -> dict:
    """Write a status "failed" manifest naming the reason, delete staging and any partial result.
    Returns the manifest summary (same shape as merge_run's)."""
    raise NotImplementedError("fail_run: being written on branch issue-12")


def execution_name(bucket: str, key: str, etag: str, version_id: str | None) -> str:
    """Deterministic, <= 80 chars, [A-Za-z0-9-_] only: a duplicate event maps to the same name (StartExecution
    'ExecutionAlreadyExists' counts as success). The end of the key stays readable in the console; a hash of
    bucket, key, ETag and version makes the name unique."""
    digest = hashlib.sha256("\0".join((bucket, key, etag or "", version_id or "")).encode("utf-8")).hexdigest()[:24]
    readable = _NOT_NAME.sub("-", key.rsplit("/", 1)[-1])[-(EXECUTION_NAME_MAX - len(digest) - 1):]
    return f"{readable.strip('-_') or 'object'}-{digest}"
