"""Labelled data: `text;label` files (split on the last `;`), CSV and JSONL; seeded stratified splits."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emotion"


class DataError(ValueError):
    """A labelled file is malformed; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    line: int


@dataclass
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]
    labels: list[str]

    def label_ids(self, examples: Sequence[Example]) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[e.label] for e in examples]


def default_data_dir() -> Path | None:
    """`../shared/data/emotion/` beside the checkout, when it exists."""
    return SHARED_DATA_DIR if (SHARED_DATA_DIR / "train.txt").is_file() else None


def _check(path: Path, line: int, text: str, label: str, allowed: set[str] | None) -> Example:
    text, label = text.strip(), label.strip()
    if not text:
        raise DataError(f"{path}:{line}: empty text; remove the line or give it text")
    if not label:
        raise DataError(f"{path}:{line}: empty label; every example needs one of the labels")
    if allowed is not None and label not in allowed:
        raise DataError(f"{path}:{line}: unknown label {label!r}; expected one of {sorted(allowed)}")
    return Example(text=text, label=label, line=line)


def _read_semicolon(path: Path, allowed: set[str] | None) -> Iterable[Example]:
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, raw in enumerate(fh, start=1):
            raw = raw.rstrip("\r\n")
            if not raw.strip():
                continue
            text, sep, label = raw.rpartition(";")
            if not sep:
                raise DataError(f"{path}:{line_no}: no ';' separator; write each example as 'text;label'")
            yield _check(path, line_no, text, label, allowed)


def _read_csv(path: Path, allowed: set[str] | None) -> Iterable[Example]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
            raise DataError(f"{path}:1: the header needs 'text' and 'label' columns, found {reader.fieldnames}")
        for row in reader:
            yield _check(path, reader.line_num, row.get("text") or "", row.get("label") or "", allowed)


def _read_jsonl(path: Path, allowed: set[str] | None) -> Iterable[Example]:
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg}); write one JSON object per line") from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataError(f"{path}:{line_no}: expected an object with a string 'text' and a 'label'")
            yield _check(path, line_no, obj["text"], str(obj.get("label", "")), allowed)


def load_examples(path: str | Path, labels: Sequence[str] | None = None) -> list[Example]:
    """Read one labelled file; `labels`, when given, is the allowed label set."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    allowed = set(labels) if labels is not None else None
    reader = {".csv": _read_csv, ".jsonl": _read_jsonl}.get(path.suffix.lower(), _read_semicolon)
    examples = list(reader(path, allowed))
    if not examples:
        raise DataError(f"{path}: no examples found")
    return examples


def label_order(examples: Sequence[Example]) -> list[str]:
    """Labels in a stable order: the six emotions in the data set's own order when they are the set, else sorted."""
    emotion = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    found = {e.label for e in examples}
    return emotion if found == set(emotion) else sorted(found)


def stratified_split(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Carve `fraction` of each label out, seeded; returns (rest, carved)."""
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    rest, carved = [], []
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        n = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        carved.extend(group[:n])
        rest.extend(group[n:])
    rng.shuffle(rest)
    rng.shuffle(carved)
    return rest, carved


def _find(data_dir: Path, stem: str) -> Path | None:
    for suffix in (".txt", ".csv", ".jsonl"):
        if (data_dir / f"{stem}{suffix}").is_file():
            return data_dir / f"{stem}{suffix}"
    return None


def load_splits(data_dir: str | Path | None = None, val_fraction: float = 0.1, seed: int = 13) -> Splits:
    """train/val/test from a directory holding `train.*` and `test.*` (and optionally `val.*`)."""
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    if data_dir is None:
        raise DataError("no data directory: pass --data-dir (../shared/data/emotion/ was not found)")
    train_path, test_path = _find(data_dir, "train"), _find(data_dir, "test")
    if train_path is None or test_path is None:
        raise DataError(f"{data_dir}: needs train.txt|csv|jsonl and test.txt|csv|jsonl")
    train = load_examples(train_path)
    labels = label_order(train)
    test = load_examples(test_path, labels)
    val_path = _find(data_dir, "val") or _find(data_dir, "validation")
    if val_path is not None:
        val = load_examples(val_path, labels)
    else:
        train, val = stratified_split(train, val_fraction, seed)
    return Splits(train=train, val=val, test=test, labels=labels)
