"""The one result schema: the JSONL and CSV writers emit exactly its columns, in its order."""

from __future__ import annotations

import csv
import dataclasses
import io

import numpy as np
import orjson
import pytest

from tweetmood.manifest import OutputManifest
from tweetmood.records import Record, Rejected
from tweetmood.schema import ERROR_KEYS, RESULT_COLUMN_NAMES, SCORED_KEYS, csv_header, manifest_columns
from tweetmood.writers import make_writer

pytestmark = pytest.mark.unit
LABELS = ("sadness", "joy", "anger")
ROWS = [Record(1, "so happy", "7"), Record(2, "no id here"), Rejected(3, "empty_text", "line 3 is blank")]


def _written(fmt: str) -> bytes:
    sink = io.BytesIO()
    writer = make_writer(fmt, sink, LABELS, "m-1")
    for item in ROWS:
        writer.write(item, None if isinstance(item, Rejected) else np.array([0.1, 0.7, 0.2]))
    writer.close()
    return sink.getvalue()


def test_jsonl_rows_carry_the_schema_keys_in_the_schema_order():
    rows = [orjson.loads(line) for line in _written("jsonl").splitlines()]
    assert list(rows[0]) == list(SCORED_KEYS)
    assert list(rows[1]) == [k for k in SCORED_KEYS if k != "id"]
    assert list(rows[2]) == list(ERROR_KEYS)
    assert list(rows[0]["scores"]) == list(LABELS)


def test_every_jsonl_key_is_a_schema_column_and_keeps_the_schema_order():
    keys = [k for row in map(orjson.loads, _written("jsonl").splitlines()) for k in row]
    assert set(keys) <= set(RESULT_COLUMN_NAMES)
    for row in map(orjson.loads, _written("jsonl").splitlines()):
        assert sorted(row, key=RESULT_COLUMN_NAMES.index) == list(row)


def test_the_csv_header_is_the_schema_with_scores_spread_into_one_column_per_label():
    header, *rows = list(csv.reader(io.StringIO(_written("csv").decode("utf-8"))))
    assert header == csv_header(LABELS)
    assert header == ["line", "id", "text", "label", "score", "score_sadness", "score_joy", "score_anger", "model", "error", "message"]
    assert all(len(r) == len(header) for r in rows)
    assert dict(zip(header, rows[2]))["error"] == "empty_text"


def test_the_manifest_columns_are_every_manifest_field_with_a_glue_type():
    columns = manifest_columns()
    assert [c.name for c in columns] == [f.name for f in dataclasses.fields(OutputManifest)]
    types = {c.name: c.glue_type for c in columns}
    assert types["rows_read"] == "bigint" and types["label_counts"] == "map<string,bigint>"
    assert types["reason"] == "string" and types["retryable"] == "boolean" and types["duration_s"] == "double"
