"""Labelled data: `text;label` files (split on the last `;`), CSV, JSONL and SemEval-2018 E-c TSV; seeded splits."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emotion"
SHARED_EC_DIR = SHARED_DATA_DIR.parent / "semeval2018-ec"
# The eleven E-c emotions, in the order of the task's header.
EC_EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism", "sadness",
               "surprise", "trust")
EMOTION = "emotion"
"""`Example.source` of the emotion corpus (clean, single-label)."""
REAL_TWEETS = "ec"
"""`Example.source` of SemEval-2018 E-c rows (raw tweets, multi-label)."""


class DataError(ValueError):
    """A labelled file is malformed; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    """The single label, or for a row that carries several, the first of them in the label order."""
    line: int
    targets: tuple[float, ...] | None = None
    """Soft target over the labels (a multi-label row's probability spread); None = one-hot on `label`."""
    source: str = EMOTION
    """Which corpus the row came from: EMOTION or REAL_TWEETS."""


@dataclass
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]
    labels: list[str]
    extra_val: dict[str, list[Example]] = field(default_factory=dict)
    """Further named evaluation sets, scored every epoch: "ec-val" (held out of E-c train, used with `val` for model
    selection and for calibration) and "ec-dev" (E-c dev, rows with exactly one of the labels: reported only)."""
    report_only: dict[str, list[Example]] = field(default_factory=dict)
    """Named sets scored once, on the exported model, and never during training: "ec-dev-mixed" (E-c dev rows that
    carry two or more of the labels; is the model's top label one of theirs)."""

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


def default_ec_dir() -> Path | None:
    """`../shared/data/semeval2018-ec/` beside the checkout, when it exists."""
    return SHARED_EC_DIR if (SHARED_EC_DIR / "train.tsv").is_file() else None


def load_ec(path: str | Path, labels: Sequence[str], *, multi: str = "soft") -> list[Example]:
    """Read a SemEval-2018 Task 1 E-c TSV (`ID  Tweet  anger … trust`, 0/1 per emotion, header row).

    Only the columns named in `labels` count. A row with exactly one of them is an ordinary example; a row with
    several keeps them all as a soft target spread evenly over them (`multi="soft"`) or is left out
    (`multi="drop"`); a row with none of them is left out (its emotions — disgust, optimism, trust… — are not ours).
    """
    if multi not in ("soft", "drop"):
        raise ValueError(f"multi must be 'soft' or 'drop', not {multi!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    examples: list[Example] = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        missing = [label for label in labels if label not in header]
        if header[:2] != ["ID", "Tweet"] or missing:
            raise DataError(f"{path}:1: expected the E-c header 'ID<tab>Tweet<tab>anger…trust' with the columns "
                            f"{list(labels)}; missing {missing or header[:2]}. Is this a SemEval-2018 E-c file?")
        columns = [header.index(label) for label in labels]
        for line_no, raw in enumerate(fh, start=2):
            raw = raw.rstrip("\r\n")
            if not raw.strip():
                continue
            cells = raw.split("\t")
            if len(cells) != len(header):
                raise DataError(f"{path}:{line_no}: {len(cells)} tab-separated fields, the header has {len(header)}; "
                                "a tweet must not contain a tab — fix or remove the line")
            flags = [cells[i] for i in columns]
            if any(flag not in ("0", "1") for flag in flags):
                raise DataError(f"{path}:{line_no}: emotion columns must be 0 or 1, found {flags}; fix the line")
            text = cells[1].strip()
            if not text:
                raise DataError(f"{path}:{line_no}: empty tweet; remove the line or give it text")
            carried = [label for label, flag in zip(labels, flags) if flag == "1"]
            if not carried or (len(carried) > 1 and multi == "drop"):
                continue
            targets = None
            if len(carried) > 1:
                targets = tuple(1.0 / len(carried) if label in carried else 0.0 for label in labels)
            examples.append(Example(text=text, label=carried[0], line=line_no, targets=targets, source=REAL_TWEETS))
    if not examples:
        raise DataError(f"{path}: no row carries any of {list(labels)}")
    return examples


def single_label(examples: Sequence[Example]) -> list[Example]:
    """The rows with exactly one label (no soft target): what accuracy and macro-F1 are reported on."""
    return [e for e in examples if e.targets is None]


def mixed_label(examples: Sequence[Example]) -> list[Example]:
    """The rows that carry several labels (a soft target): tweets with two emotions at once."""
    return [e for e in examples if e.targets is not None]


def target_matrix(examples: Sequence[Example], labels: Sequence[str]) -> np.ndarray:
    """One row per example: its soft target when it has one, else one-hot on its label."""
    index = {label: i for i, label in enumerate(labels)}
    targets = np.zeros((len(examples), len(labels)), dtype=np.float32)
    for row, e in enumerate(examples):
        if e.targets is not None:
            targets[row] = e.targets
        else:
            targets[row, index[e.label]] = 1.0
    return targets


def add_real_tweets(splits: Splits, ec_dir: str | Path, *, val_fraction: float = 0.1, seed: int = 13,
                    multi: str = "soft") -> Splits:
    """Train on E-c train as well: a seeded `val_fraction` of it is held out as "ec-val"; E-c dev (its single-label
    rows) becomes "ec-dev", which is reported and never trained on; its rows with several of the labels become the
    report-only "ec-dev-mixed"."""
    ec_dir = Path(ec_dir)
    train = load_ec(ec_dir / "train.tsv", splits.labels, multi=multi)
    rng = random.Random(seed)
    order = list(range(len(train)))
    rng.shuffle(order)
    n_val = round(len(train) * val_fraction)
    held = set(order[:n_val])
    ec_train = [e for i, e in enumerate(train) if i not in held]
    ec_val = [e for i, e in enumerate(train) if i in held]
    combined = splits.train + ec_train
    rng.shuffle(combined)
    extra = dict(splits.extra_val)
    extra["ec-val"] = ec_val
    dev = load_ec(ec_dir / "dev.tsv", splits.labels)
    extra["ec-dev"] = single_label(dev)
    return Splits(train=combined, val=splits.val, test=splits.test, labels=splits.labels, extra_val=extra,
                  report_only={**splits.report_only, "ec-dev-mixed": mixed_label(dev)})


def resolve_real_tweets_dir(value: str | None, data_dir: str | Path | None = None) -> Path | None:
    """The `--real-tweets-dir` option: "auto" = ../shared/data/semeval2018-ec when present and the emotion data is the
    shared corpus too (a run on other data gets real tweets only when asked), "none" = off, else a directory holding
    train.tsv and dev.tsv."""
    if value is None or value.lower() == "none":
        return None
    if value.lower() == "auto":
        own_data = data_dir is not None and Path(data_dir).resolve() != SHARED_DATA_DIR.resolve()
        return None if own_data else default_ec_dir()
    path = Path(value)
    if not (path / "train.tsv").is_file() or not (path / "dev.tsv").is_file():
        raise DataError(f"{path}: --real-tweets-dir needs train.tsv and dev.tsv (SemEval-2018 E-c); pass none to "
                        "train on the emotion corpus alone")
    return path


def load_splits(data_dir: str | Path | None = None, val_fraction: float = 0.1, seed: int = 13,
                real_tweets_dir: str | Path | None = None) -> Splits:
    """train/val/test from a directory holding `train.*` and `test.*` (and optionally `val.*`); with
    `real_tweets_dir`, E-c train joins the training rows (see `add_real_tweets`)."""
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
    splits = Splits(train=train, val=val, test=test, labels=labels)
    return add_real_tweets(splits, real_tweets_dir, seed=seed) if real_tweets_dir else splits
