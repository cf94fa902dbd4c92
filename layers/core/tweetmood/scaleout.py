"""Scale-out of one input: plan record-aligned chunks, score one chunk, merge the parts in order (or fail the run).

The same three steps run on Step Functions (PlanRun → Distributed Map of ScoreChunk → MergeRun) and on a
laptop's process pool (`tweetmood score --workers N`): only the storage passed in differs (`tweetmood.storage`).

A chunk is cut only where the serial reader is between two rows (after the row's last physical line), found by
running that very reader over the file once, so every chunk yields the rows, line numbers, ids and messages a
serial run gives. When the serial run would fail the file part way (a damaged .gz, an unclosed CSV quote) the
plan ends at the last row before the failure and its last chunk carries the failure, so the merge writes the
failed manifest a serial run writes, with the same counts.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from typing import Any, Iterable, Iterator

import orjson

from tweetmood import keys
from tweetmood.manifest import COMPLETE, FAILED, OutputManifest, utc_now
from tweetmood.readers import ChunkStart, ReadState, byte_order_mark, gunzip, input_format, read_chunks, read_records, \
    records_from_bytes, too_large_reason
from tweetmood.batching import WINDOW_BATCHES
from tweetmood.records import FileError
from tweetmood.scoring import ordered_labels, score_items
from tweetmood.settings import Settings
from tweetmood.writers import CONTENT_TYPES

EXECUTION_NAME_MAX = 80
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")
JSON = "application/json"


class PartsMissing(RuntimeError):
    """The merge found parts absent or with counts that do not add up to the plan; the run fails."""


# --- plan ----------------------------------------------------------------------------


def plan_run(storage: Any, settings: Settings, *, bucket: str, key: str, etag: str, run_id: str) -> dict:
    """Stream the object once; cut record-aligned chunks; write the plan (a JSON ARRAY of chunk items) to
    `<staging prefix of run_id>/plan.json`; gz sources are gunzipped once to staging first.

    Returns {"bucket","key","etag","run_id","plan_key","chunks": n} (plus "staging", "output_key",
    "manifest_key", "size", "started" for the merge). One chunk item is self-contained:
    {"run_id","bucket","key","source_key","etag","index","start","end","first_line","format","header","text_column"}
    (plus "rows" planned, "staging", "decompressed", "serial" and "file_error").
    """
    run = {
        "bucket": bucket, "key": key, "etag": etag, "run_id": run_id,
        "staging": keys.staging_prefix_for(run_id, settings),
        "output_key": keys.output_key_for(key, settings),
        "manifest_key": keys.manifest_key_for(key, settings),
    }
    return plan(storage, settings, run)


def local_run(path: str, output: str, staging: str, run_id: str = "local") -> dict:
    """What `plan` needs for a local file scored into `output`, staging its parts in the directory `staging`."""
    from tweetmood.scoring import local_manifest_path

    return {
        "bucket": "", "key": str(path), "etag": None, "run_id": run_id, "staging": str(staging).rstrip("/") + "/",
        "output_key": str(output), "manifest_key": str(local_manifest_path(output)),
    }


def plan(storage: Any, settings: Settings, run: dict) -> dict:
    """Plan the input `run` names (bucket, key, etag, run_id, staging, output_key, manifest_key); see `plan_run`."""
    started = utc_now()
    bucket, key, staging = run["bucket"], run["key"], run["staging"]
    items, size = _cut(storage, settings, run)
    plan_key = keys.plan_key_in(staging)
    storage.put(bucket, plan_key, orjson.dumps(items), JSON)
    return {**run, "plan_key": plan_key, "chunks": len(items), "size": size, "started": started}


def _cut(storage: Any, settings: Settings, run: dict) -> tuple[list[dict], int | None]:
    bucket, key, etag = run["bucket"], run["key"], run.get("etag")
    fmt, gz = input_format(key) or ("", False)
    base = {
        "run_id": run["run_id"], "bucket": bucket, "key": key, "source_key": key, "etag": etag,
        "staging": run["staging"], "format": fmt, "header": None,
        "text_column": settings.text_column if fmt in ("csv", "jsonl") else None,
        "decompressed": False, "serial": False, "file_error": None,
    }
    body, info = storage.get(bucket, key)
    size = info.size
    with body:
        if size is not None and size > settings.max_object_bytes:
            error = {"reason": too_large_reason(key, size, settings.max_object_bytes), "code": "too_large"}
            return [_item(base, 0, 0, 0, 1, 0, file_error=error)], size
        data: Iterable[bytes] = read_chunks(body, key, settings.max_object_bytes)
        staged = None
        if gz:
            staged_key = keys.gunzipped_key_in(run["staging"], key)
            staged = _Tee(gunzip(data, key, settings), storage.sink(bucket, staged_key, "application/octet-stream"))
            data = staged
            base.update(source_key=staged_key, decompressed=True, etag=None)
        try:
            head, data = _peek(data, 4)
            mark = byte_order_mark(head)
            if mark in ("utf-16", "utf-32"):
                # Transcoded while read: byte offsets of the text are not those of the file, so one chunk reads it all.
                if staged is not None:
                    staged.sink.abort()
                return [_item({**base, "source_key": key, "decompressed": False, "etag": etag, "serial": True},
                              0, 0, size, 1, None)], size
            items = _cut_rows(data, key, settings, base, shift=3 if mark == "utf-8" else 0)
        except FileError as exc:
            # Unreadable from its first bytes (a .gz that is not gzip): one chunk that fails the run with the reason
            # the serial reader gives, as _cut_rows does for a file that fails later.
            if staged is not None:
                staged.sink.abort()
            error = {"reason": exc.reason, "code": exc.code}
            return [_item({**base, "source_key": key, "decompressed": False, "etag": etag}, 0, 0, 0, 1, 0,
                          file_error=error)], size
        except BaseException:
            if staged is not None:
                staged.sink.abort()
            raise
    if staged is not None:
        staged.sink.commit()
        size_read = staged.total
        if items[-1]["file_error"] is None:
            items[-1]["end"] = size_read
    elif items[-1]["file_error"] is None and size is not None:
        items[-1]["end"] = size
    return items, size


def _cut_rows(data: Iterable[bytes], key: str, settings: Settings, base: dict, shift: int) -> list[dict]:
    """Read every row once with the serial reader and cut once a chunk is full, at the next place where the
    serial run starts a new batching window: the model then sees the very batches a serial run gives it,
    so the scores are the same to the last digit (batch neighbours move them by ~1e-7 through padding)."""
    state = ReadState()
    items: list[dict] = []
    start, first_line, rows, last_end, total = 0, 1, 0, 0, 0
    window = settings.batch_size * WINDOW_BATCHES
    error = None
    try:
        for _ in records_from_bytes(data, key, settings, state=state):
            rows += 1
            total += 1
            last_end = state.end + shift
            if total % window == 0 and (rows >= settings.chunk_rows or last_end - start >= settings.chunk_bytes):
                items.append(_item(base, len(items), start, last_end, first_line, rows, header=state.header,
                                   delimiter=state.delimiter))
                start, first_line, rows = last_end, state.lines + 1, 0
    except FileError as exc:
        error = {"reason": exc.reason, "code": exc.code}
    if rows or error or not items:
        # Without an error the end is fixed by the caller to the size read; trailing bytes belong to the last chunk.
        items.append(_item(base, len(items), start, last_end, first_line, rows, header=state.header,
                           delimiter=state.delimiter, file_error=error))
    return items


def _item(base: dict, index: int, start: int, end: int | None, first_line: int, rows: int | None, *,
          header: list[str] | None = None, delimiter: str = ",", file_error: dict | None = None) -> dict:
    csv_later = base["format"] == "csv" and index > 0
    return {
        **base, "index": index, "start": start, "end": end, "first_line": first_line, "rows": rows,
        "header": header if csv_later else None, "delimiter": delimiter if csv_later else None,
        "file_error": file_error,
    }


class _Tee:
    """Pass bytes on and write them to `sink` too (the gunzipped staging copy), counting them."""

    def __init__(self, chunks: Iterable[bytes], sink: Any):
        self._chunks, self.sink, self.total = chunks, sink, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.sink.write(chunk)
            self.sink.end_row()
            self.total += len(chunk)
            yield chunk


def _peek(chunks: Iterable[bytes], n: int) -> tuple[bytes, Iterator[bytes]]:
    """The first `n` bytes (or fewer, at the end) and an iterator that still yields everything."""
    it = iter(chunks)
    taken: list[bytes] = []
    got = 0
    for chunk in it:
        taken.append(chunk)
        got += len(chunk)
        if got >= n:
            break

    def rest() -> Iterator[bytes]:
        yield from taken
        yield from it

    return b"".join(taken)[:n], rest()


def read_plan(storage: Any, run: dict) -> list[dict]:
    """The chunk items `plan_run` wrote for `run`."""
    raw = storage.read_bytes(run["bucket"], run["plan_key"])
    if raw is None:
        raise PartsMissing(f"the plan {run['plan_key']} of run {run['run_id']} is gone")
    return orjson.loads(raw)


# --- score one chunk -----------------------------------------------------------------


def score_chunk(storage: Any, classifier: Any, settings: Settings, item: dict) -> dict:
    """Ranged GET of item's bytes, score with the existing core, write part `<staging>/parts/<index:06d>`
    (overwritten on retry), then its counts. Returns counts only: {"index","rows","scored","rejected"}."""
    bucket, key, staging, index = item["bucket"], item["key"], item["staging"], item["index"]
    body = None
    if item["serial"]:
        body, _ = storage.get(bucket, key)
        rows = read_records(body, key, settings)
    elif item["end"] is None or item["end"] <= item["start"]:
        rows = iter(())
    else:
        body = storage.get_range(bucket, item["source_key"], item["start"], item["end"], item.get("etag"))
        at = ChunkStart(item["first_line"], item["header"], decompressed=True, file_start=item["start"] == 0,
                        delimiter=item.get("delimiter") or ",")
        rows = read_records(body, key, settings, at=at)
    sink = storage.sink(bucket, keys.part_key_in(staging, index), CONTENT_TYPES[settings.output_format])
    try:
        manifest, stop = score_items(rows, key, classifier, settings, sink, header=index == 0)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    finally:
        if body is not None:
            body.close()
    file_error = item.get("file_error")
    if stop.error is not None:
        file_error = {"reason": stop.error.reason, "code": stop.error.code}
    counts = {
        "index": index, "rows": manifest.rows_read, "scored": manifest.rows_scored, "rejected": manifest.rows_rejected,
        "label_counts": manifest.label_counts, "error_counts": manifest.error_counts,
        "model_version": manifest.model_version, "model_sha256": manifest.model_sha256,
        "model_s": manifest.model_s, "duration_s": manifest.duration_s, "file_error": file_error,
    }
    storage.put(bucket, keys.part_counts_key_in(staging, index), orjson.dumps(counts), JSON)
    return {"index": index, "rows": counts["rows"], "scored": counts["scored"], "rejected": counts["rejected"]}


# --- merge ---------------------------------------------------------------------------


def merge_run(storage: Any, settings: Settings, run: dict, *, invocations: int | None = None) -> dict:
    """`run` is plan_run's return value. Check parts against the plan (all present, counts add up) else raise
    PartsMissing; concatenate in input order (UploadPartCopy if parts >= 5 MiB else streamed), write the manifest
    with summed counts, delete staging.

    Returns {"status","rows_read","rows_scored","rows_rejected","output_key","manifest_key"}."""
    bucket, staging = run["bucket"], run["staging"]
    items = read_plan(storage, run)
    counts = [_part_counts(storage, bucket, staging, item) for item in items]
    # The serial run stops at the first file-level failure: so do the totals.
    last = next((i for i, c in enumerate(counts) if c["file_error"]), len(counts) - 1)
    used = counts[: last + 1]
    versions = {(c["model_version"], c["model_sha256"]) for c in used}
    if len(versions) > 1:
        raise PartsMissing(f"run {run['run_id']}: parts were scored by different models {sorted(versions)}; "
                           "the file is scored again")
    manifest = _merged_manifest(run, used, invocations if invocations is not None else len(items), settings)
    if manifest.complete:
        parts = [keys.part_key_in(staging, item["index"]) for item in items]
        storage.concatenate(bucket, parts, run["output_key"], CONTENT_TYPES[settings.output_format],
                            sizes=[c["size"] for c in counts])
    storage.put(bucket, run["manifest_key"], manifest.to_json(), JSON)
    storage.delete_prefix(bucket, staging)
    return _summary(manifest, run)


def _part_counts(storage: Any, bucket: str, staging: str, item: dict) -> dict:
    index = item["index"]
    raw = storage.read_bytes(bucket, keys.part_counts_key_in(staging, index))
    if raw is None:
        raise PartsMissing(f"chunk {index} of {item['key']} (lines from {item['first_line']}) has no part: "
                           "its scoring never finished; the file is scored again")
    counts = orjson.loads(raw)
    if item.get("rows") is not None and counts["rows"] != item["rows"]:
        raise PartsMissing(f"chunk {index} of {item['key']} holds {counts['rows']} rows but the plan cut "
                           f"{item['rows']}; the file is scored again")
    part = next(iter(storage.list(bucket, keys.part_key_in(staging, index))), None)
    if part is None or part.key != keys.part_key_in(staging, index):
        raise PartsMissing(f"chunk {index} of {item['key']} counted its rows but its part is gone")
    counts["size"] = part.size
    return counts


def _merged_manifest(run: dict, counts: list[dict], invocations: int, settings: Settings) -> OutputManifest:
    labels: Counter = Counter()
    errors: Counter = Counter()
    order: list[str] = []
    for c in counts:
        labels.update(c["label_counts"])
        errors.update(c["error_counts"])
        order += [k for k in c["label_counts"] if k not in order]
    scored, rejected = sum(labels.values()), sum(errors.values())
    error = counts[-1]["file_error"] if counts else None
    duration = _seconds_since(run.get("started"))
    return OutputManifest(
        source_bucket=run["bucket"] or None, source_key=run["key"], source_etag=run.get("etag"),
        source_size=run.get("size"), output_key=run["output_key"], format=settings.output_format,
        rows_read=scored + rejected, rows_scored=scored, rows_rejected=rejected,
        label_counts=ordered_labels(order, labels), error_counts=dict(sorted(errors.items())),
        model_version=counts[0]["model_version"] if counts else "", model_sha256=counts[0]["model_sha256"] if counts else "",
        started=run.get("started") or utc_now(), finished=utc_now(), duration_s=round(duration, 3),
        tweets_per_s=round(scored / duration, 1) if duration > 0 else 0.0,
        model_s=round(sum(c["model_s"] for c in counts), 3),
        status=FAILED if error else COMPLETE, reason=error["reason"] if error else None,
        invocations=invocations,
    )


def _seconds_since(started: str | None) -> float:
    if not started:
        return 0.0
    from datetime import datetime

    then = datetime.fromisoformat(started.replace("Z", "+00:00"))
    return max(0.0, time.time() - then.timestamp())


def _summary(manifest: OutputManifest, run: dict) -> dict:
    return {
        "status": manifest.status, "rows_read": manifest.rows_read, "rows_scored": manifest.rows_scored,
        "rows_rejected": manifest.rows_rejected, "output_key": run["output_key"], "manifest_key": run["manifest_key"],
    }


def fail_run(storage: Any, settings: Settings, run: dict, error: str, cause: str) -> dict:
    """Write a status "failed" manifest naming the reason, delete staging and any partial result.
    Returns the manifest summary (same shape as merge_run's). `run` may be plan_run's return value or,
    when the plan itself failed, the execution input ({"bucket","key","etag","run_id"})."""
    bucket, key = run["bucket"], run["key"]
    run = {
        **run,
        "staging": run.get("staging") or keys.staging_prefix_for(run["run_id"], settings),
        "output_key": run.get("output_key") or keys.output_key_for(key, settings),
        "manifest_key": run.get("manifest_key") or keys.manifest_key_for(key, settings),
    }
    previous = storage.read_bytes(bucket, run["manifest_key"])
    attempts = 1
    if previous is not None:
        try:
            earlier = OutputManifest.from_json(previous)
            if earlier.source_etag == run.get("etag") and not earlier.complete:
                attempts = earlier.attempts + 1
        except (ValueError, TypeError):
            pass
    now = utc_now()
    retryable = attempts < settings.max_attempts
    what = f"{error}: {cause}" if cause else error
    reason = (f"scoring {key} on the scale-out state machine (run {run['run_id']}) failed with {what}; "
              + ("the sweep tries it again" if retryable else
                 f"gave up after {attempts} attempts (MAX_ATTEMPTS={settings.max_attempts}): fix the cause, "
                 "then upload the file again"))
    manifest = OutputManifest(
        source_bucket=bucket, source_key=key, source_etag=run.get("etag"), source_size=run.get("size"),
        output_key=run["output_key"], format=settings.output_format, started=run.get("started") or now,
        finished=now, status=FAILED, reason=reason, retryable=retryable, attempts=attempts,
    )
    storage.delete(bucket, [run["output_key"]])
    storage.put(bucket, run["manifest_key"], manifest.to_json(), JSON)
    storage.delete_prefix(bucket, run["staging"])
    return _summary(manifest, run)


def execution_name(bucket: str, key: str, etag: str, version_id: str | None, attempt: int = 1) -> str:
    """Deterministic, <= 80 chars, [A-Za-z0-9-_] only: a duplicate event maps to the same name (StartExecution
    'ExecutionAlreadyExists' counts as success). The end of the key stays readable in the console; a hash of
    bucket, key, ETag, version and (after a failed run) the attempt number makes the name unique."""
    parts = [bucket, key, etag or "", version_id or ""] + ([str(attempt)] if attempt > 1 else [])
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:24]
    readable = _NOT_NAME.sub("-", key.rsplit("/", 1)[-1])[-(EXECUTION_NAME_MAX - len(digest) - 1):]
    return f"{readable.strip('-_') or 'object'}-{digest}"
