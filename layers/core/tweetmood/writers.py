"""Result writers: JSON Lines (default) and CSV, one row per input row, in input order."""

from __future__ import annotations

import csv
import io
from typing import BinaryIO, Protocol, Sequence

import numpy as np
import orjson

from tweetmood.records import Record, Rejected
from tweetmood.schema import csv_header

DIGITS = 6
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class ResultWriter(Protocol):
    """Writes one result or error row per call; `close()` flushes but leaves the sink open."""

    def write(self, item: Record | Rejected, probs: np.ndarray | None) -> str | None: ...

    def close(self) -> None: ...


def _label_and_scores(labels: Sequence[str], probs: np.ndarray) -> tuple[str, float, list[float]]:
    best = int(np.argmax(probs))
    rounded = [round(p, DIGITS) for p in probs.tolist()]
    return labels[best], rounded[best], rounded


class JsonlWriter:
    """`{"line", "id"?, "text", "label", "score", "scores", "model"}` or `{"line", "error", "message"}` per line."""

    def __init__(self, sink: BinaryIO, labels: Sequence[str], model_version: str, header: bool = True):
        self._sink = sink
        self._labels = list(labels)
        self._model = model_version

    def write(self, item: Record | Rejected, probs: np.ndarray | None) -> str | None:
        """Write one row; returns the label for a scored row, None for an error row."""
        if isinstance(item, Rejected):
            self._sink.write(orjson.dumps({"line": item.line, "error": item.error, "message": item.message}) + b"\n")
            return None
        label, score, scores = _label_and_scores(self._labels, probs)
        row: dict = {"line": item.line}
        if item.id is not None:
            row["id"] = item.id
        row.update(text=item.text, label=label, score=score, scores=dict(zip(self._labels, scores)), model=self._model)
        self._sink.write(orjson.dumps(row) + b"\n")
        return label

    def close(self) -> None:
        self._sink.flush()


class CsvWriter:
    """A flat CSV: `line,id,text,label,score,score_<label>…,model,error,message` (id blank when absent)."""

    def __init__(self, sink: BinaryIO, labels: Sequence[str], model_version: str, header: bool = True):
        self._text = io.TextIOWrapper(sink, encoding="utf-8", newline="", write_through=True)
        self._csv = csv.writer(self._text)
        self._labels = list(labels)
        self._model = model_version
        if header:
            self._csv.writerow(csv_header(self._labels))

    def write(self, item: Record | Rejected, probs: np.ndarray | None) -> str | None:
        """Write one row; returns the label for a scored row, None for an error row."""
        blanks = [""] * len(self._labels)
        if isinstance(item, Rejected):
            self._csv.writerow([item.line, "", "", "", "", *blanks, "", item.error, item.message])
            return None
        label, score, scores = _label_and_scores(self._labels, probs)
        self._csv.writerow([item.line, item.id or "", item.text, label, score, *scores, self._model, "", ""])
        return label

    def close(self) -> None:
        self._text.flush()
        # Leave the caller's binary sink open: the service still uploads it.
        self._text.detach()


def make_writer(
    fmt: str, sink: BinaryIO, labels: Sequence[str], model_version: str, header: bool = True
) -> ResultWriter:
    """The writer for OUTPUT_FORMAT `fmt` (jsonl or csv); `header=False` leaves out CSV's header row
    (a scale-out part after the first: the merged result has the header once)."""
    if fmt == "jsonl":
        return JsonlWriter(sink, labels, model_version, header)
    if fmt == "csv":
        return CsvWriter(sink, labels, model_version, header)
    raise ValueError(f"unknown output format {fmt!r}; use jsonl or csv")
