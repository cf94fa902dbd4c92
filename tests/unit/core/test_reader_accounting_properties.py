"""Property: whatever bytes arrive, every reader accounts for every row (rows in == scored + rejected)."""

from __future__ import annotations

import gzip
import io
import re

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tweetmood.readers import read_records
from tweetmood.records import FileError, Record, Rejected
from tweetmood.service import score_stream
from tweetmood.settings import Settings

pytestmark = pytest.mark.unit

SETTINGS = Settings(max_line_bytes=64, max_text_chars=40)
NAMES = ["x.txt", "x.csv", "x.jsonl", "x.txt.gz", "x.csv.gz", "x.jsonl.gz"]
LINE_PIECES = [
    b"a plain tweet",
    b"",
    b"   ",
    b"bad \xff\xfe utf8",
    b"nul\x00inside",
    b'"quoted, with comma"',
    b'"unclosed',
    b'{"text": "json tweet", "id": 1}',
    b'{"text": 3}',
    b"[1, 2]",
    b"z" * 100,
    "emoji 😀 and ünïcode".encode(),
    b"a,b,c",
]
line_mixes = st.tuples(
    st.lists(st.sampled_from(LINE_PIECES), max_size=30),
    st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=1, max_size=30),
    st.booleans(),
)


def physical_line_count(data: bytes) -> int:
    parts = re.split(rb"\r\n|\r|\n", data)
    return len(parts) - (1 if parts[-1] == b"" else 0)


def consume(data: bytes, name: str) -> tuple[list, FileError | None]:
    items: list = []
    try:
        for item in read_records(io.BytesIO(data), name, SETTINGS):
            assert isinstance(item, (Record, Rejected))
            items.append(item)
    except FileError as exc:
        assert exc.reason and name in exc.reason
        return items, exc
    return items, None


def join(pieces, endings, final_newline) -> bytes:
    body = b"".join(p + endings[i % len(endings)] for i, p in enumerate(pieces))
    return body if final_newline or not body else body[: -len(endings[(len(pieces) - 1) % len(endings)])]


class _ConstantClassifier:
    labels = ["a", "b"]
    version, sha256 = "const", "0" * 64

    def lengths(self, texts):
        return [len(t) for t in texts]

    def predict_proba(self, texts):
        import numpy as np

        return np.full((len(texts), 2), 0.5, dtype=np.float32)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400), name=st.sampled_from(NAMES))
def test_random_bytes_are_read_or_refused_never_lost(data, name):
    # Payloads starting with "!" stay uncompressed, so .gz names also meet non-gzip bytes.
    payload = gzip.compress(data) if name.endswith(".gz") and data[:1] != b"!" else data
    items, failure = consume(payload, name)
    lines = [i.line for i in items]
    assert lines == sorted(set(lines))
    if failure is None and name.startswith("x.txt") and not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        assert len(items) == physical_line_count(data)


@hsettings(max_examples=150, deadline=None)
@given(mix=line_mixes, name=st.sampled_from(NAMES))
def test_random_line_mixes_give_one_row_per_line(mix, name):
    data = join(*mix)
    if name.startswith("x.csv"):
        data = b"id,text\n" + data
    payload = gzip.compress(data) if name.endswith(".gz") else data
    items, failure = consume(payload, name)
    if not data:
        assert failure is not None and failure.code == "empty_file"
        return
    if name.startswith(("x.txt", "x.jsonl")):
        assert failure is None and len(items) == physical_line_count(data)
    elif b'"' not in data and failure is None:
        assert len(items) == physical_line_count(data) - 1  # the header is not a row


@hsettings(max_examples=60, deadline=None)
@given(mix=line_mixes, name=st.sampled_from(NAMES))
def test_scoring_counts_every_row_as_scored_or_rejected(mix, name):
    data = join(*mix)
    if name.startswith("x.csv"):
        data = b"text\n" + data
    payload = gzip.compress(data) if name.endswith(".gz") else data
    sink = io.BytesIO()
    manifest = score_stream(io.BytesIO(payload), name, _ConstantClassifier(), SETTINGS, sink)
    written = sink.getvalue().splitlines()
    assert manifest.rows_read == manifest.rows_scored + manifest.rows_rejected == len(written)
    assert sum(manifest.error_counts.values()) == manifest.rows_rejected
    assert sum(manifest.label_counts.values()) == manifest.rows_scored
