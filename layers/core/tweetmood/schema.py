"""The one result-row schema: the columns the writers emit, the Glue table declares and `tweetmood report` reads."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence, get_args, get_type_hints


class Column(NamedTuple):
    """One result column: its name, its Glue/Hive type and what it holds."""

    name: str
    glue_type: str
    comment: str


# In this order in JSON Lines rows (keys absent when they do not apply) and in CSV, where `scores`
# becomes one `score_<label>` column per model label, in the model's label order.
RESULT_COLUMNS: tuple[Column, ...] = (
    Column("line", "bigint", "line where the row starts in the (decompressed) input, from 1"),
    Column("id", "string", "the input row's id, when it had one"),
    Column("text", "string", "the tweet as read"),
    Column("label", "string", "the most likely emotion; null on an error row"),
    Column("score", "double", "the probability of label"),
    Column("scores", "map<string,double>", "the probability of every label of the model"),
    Column("model", "string", "the model version that scored the row"),
    Column("error", "string", "the error code of a row that could not be scored"),
    Column("message", "string", "what was wrong with that row and what to do"),
)
RESULT_COLUMN_NAMES = tuple(c.name for c in RESULT_COLUMNS)
SCORED_KEYS = ("line", "id", "text", "label", "score", "scores", "model")
"""Keys of a scored JSON row (`id` only when present)."""
ERROR_KEYS = ("line", "error", "message")
"""Keys of an error JSON row."""
CSV_SCORE_PREFIX = "score_"


def csv_header(labels: Sequence[str]) -> list[str]:
    """The CSV columns for a model with `labels`: `scores` spread into `score_<label>` columns."""
    header: list[str] = []
    for name in RESULT_COLUMN_NAMES:
        header += [f"{CSV_SCORE_PREFIX}{lb}" for lb in labels] if name == "scores" else [name]
    return header


_GLUE_TYPES = {int: "bigint", float: "double", str: "string", bool: "boolean", dict[str, int]: "map<string,bigint>"}


def manifest_columns() -> tuple[Column, ...]:
    """The manifest's fields as Glue columns, from `OutputManifest` itself (so a new field cannot be forgotten)."""
    from tweetmood.manifest import OutputManifest

    hints = get_type_hints(OutputManifest)
    return tuple(Column(f.name, _glue_type(hints[f.name]), f.name.replace("_", " ")) for f in dataclasses.fields(OutputManifest))


def _glue_type(hint: Any) -> str:
    if hint in _GLUE_TYPES:
        return _GLUE_TYPES[hint]
    (inner,) = [t for t in get_args(hint) if t is not type(None)]  # `str | None` is a nullable string
    return _GLUE_TYPES[inner]
