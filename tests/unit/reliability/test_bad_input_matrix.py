"""The bad-input matrix (tests/bad_inputs.py) through the scoring core: an error row, a failed manifest or a
refused key for each case, never a crash or a silent drop, and rows in == scored + rejected."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from bad_inputs import CASES, Case
from tweetmood import scaleout
from tweetmood.keys import is_scoreable_key, output_key_for
from tweetmood.scoring import local_manifest_path, score_file, score_stream
from tweetmood.settings import Settings
from tweetmood.storage import LocalStorage

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_input_ends_in_error_rows_a_failed_manifest_or_a_refused_key(case: Case, tiny_classifier):
    settings = Settings(**case.settings)
    body = case.body()
    ok, why = is_scoreable_key(case.key, len(body), settings)
    if case.skip:
        assert not ok and case.skip in why, why
        assert case.key in why or "…" in why  # the reason names the object
        if case.failure is None:
            return
    else:
        assert ok, why
        assert output_key_for(case.key, settings).startswith(settings.output_prefix)

    sink = io.BytesIO()
    manifest = score_stream(io.BytesIO(body), case.key, tiny_classifier, settings, sink)
    rows = [orjson.loads(line) for line in sink.getvalue().splitlines()]

    # The accounting invariant: every row read is in the output exactly once, in order, scored or rejected.
    assert manifest.rows_read == manifest.rows_scored + manifest.rows_rejected == len(rows)
    assert [r["line"] for r in rows] == sorted({r["line"] for r in rows})
    assert manifest.error_counts == {code: n for code, n in manifest.error_counts.items() if n}
    assert sum(1 for r in rows if "error" in r) == manifest.rows_rejected
    if case.rows is not None:
        assert manifest.rows_read == case.rows
    if case.failure:
        assert manifest.status == "failed" and not manifest.retryable
        assert case.failure in manifest.reason and case.key in manifest.reason, manifest.reason
    else:
        assert manifest.status == "complete" and manifest.reason is None
        assert manifest.error_counts == case.errors
        for row in rows:
            if "error" in row:
                assert f"line {row['line']} of {case.key}" in row["message"] or case.key in row["message"]
    if case.first_text is not None:
        assert next(r["text"] for r in rows if "text" in r) == case.first_text


def test_the_matrix_covers_every_case_the_reliability_issue_lists():
    names = " | ".join(c.name for c in CASES).lower()
    for needle in [
        "invalid utf-8", "byte-order mark", "utf-16", "crlf", "lone cr", "nul", "1 mib line", "10,000 blank",
        "empty file", "zero-byte", "only a header", "quoted delimiters", "escaped quotes", "embedded newlines",
        "unclosed quote", "missing text column", "ragged", "jsonl broken", "non-object", "missing text",
        "non-string text", "truncated gzip", "gzip bomb", "not gzip", "larger than max_object_bytes", "'..'",
        "1024-byte key", "spaces, '+', '%' and non-ascii", "under the output prefix",
    ]:
        assert needle in names, needle


CHUNKED = [c for c in CASES if not c.skip]


@pytest.mark.parametrize("case", CHUNKED, ids=[c.name for c in CHUNKED])
def test_each_bad_input_cut_into_chunks_ends_like_the_serial_run(case: Case, tiny_classifier, tmp_path):
    """The chunked path (plan, score every chunk, merge) that `tweetmood score --workers N` and the state machine
    run: the same status, counts, error codes and reason as one serial read, never an exception."""
    body = case.body()
    # Small inputs in chunks of 30 rows, so that even they cut into several; big ones at the default 50,000.
    small = {"batch_size": 2, "chunk_rows": 30} if len(body) < (1 << 20) and (case.rows or 0) <= 10_002 else {}
    settings = Settings(**{**small, **case.settings})
    src = tmp_path / ("input" + "".join(Path(case.key).suffixes[-2:]))
    src.write_bytes(body)
    serial = score_file(src, tmp_path / "serial.jsonl", classifier=tiny_classifier, settings=settings)
    storage = LocalStorage()
    run = scaleout.plan(storage, settings, scaleout.local_run(str(src), str(tmp_path / "chunked.jsonl"),
                                                              str(tmp_path / "staging")))
    for item in scaleout.read_plan(storage, run):
        scaleout.score_chunk(storage, tiny_classifier, settings, item)
    chunked = scaleout.merge_run(storage, settings, run, invocations=1)
    assert (chunked["status"], chunked["rows_read"], chunked["rows_scored"], chunked["rows_rejected"]) == (
        serial.status, serial.rows_read, serial.rows_scored, serial.rows_rejected)
    manifest = orjson.loads(local_manifest_path(tmp_path / "chunked.jsonl").read_bytes())
    assert manifest["reason"] == serial.reason and manifest["error_counts"] == serial.error_counts
