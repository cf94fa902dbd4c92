"""Streaming readers for .txt, .csv and .jsonl tweet files, each optionally gzip-compressed.

Nothing here holds a whole file: bytes flow chunk by chunk through gunzip (with caps),
encoding detection and a line splitter that never keeps more than MAX_LINE_BYTES of one line.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import zlib
from itertools import chain
from typing import BinaryIO, Iterable, Iterator, NamedTuple

import orjson

from tweetmood import records as rc
from tweetmood.records import FileError, Record, Rejected
from tweetmood.settings import Settings

CHUNK = 1 << 16
# A small .gz may legitimately inflate a lot (say, 50 kB of repeated text): the ratio cap
# only applies once this much has come out.
RATIO_GRACE_BYTES = 1 << 20
# A .tsv is read as CSV: its separator is sniffed from the header like any other.
FORMATS = {".txt": "txt", ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _in_words(names) -> str:
    """`a, b or c`, for messages."""
    names = list(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


FORMAT_NAMES = _in_words(FORMATS)
"""The suffixes in words, for messages: ".txt, .csv, .tsv, .jsonl or .ndjson"."""
# Where a CSV column or a JSON field holds the tweet, first match wins. `full_text` leads because exports of the
# Twitter API carry the untruncated tweet there (and a truncated `text`, when both are present).
TEXT_COLUMNS = ("full_text", "text", "tweet", "tweet_text", "content")
TEXT_COLUMN_NAMES = _in_words(TEXT_COLUMNS)
ID_COLUMNS = ("id", "id_str", "tweet_id")
"""Where a row's id is carried from, first match wins (`id_str`: the Twitter API's exact string form)."""
CSV_DELIMITERS = (",", ";", "\t", "|")
SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "bars (|)"}

_GZIP_MAGIC = b"\x1f\x8b"
_EOL = re.compile(rb"\r\n|\r|\n")
_SURROGATE = re.compile("[\udc80-\udcff]")
# Stands in for a physical line that was too long to keep, so the CSV parser can go on.
_TOO_LONG = "\U0010fffe"

Item = Record | Rejected


def input_format(name: str) -> tuple[str, bool] | None:
    """(format, gzipped) for a file name such as `a.csv.gz`, or None if unsupported."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[:-3]
    for suffix, fmt in FORMATS.items():
        if lower.endswith(suffix):
            return fmt, gz
    return None


def _known_format(name: str) -> tuple[str, bool]:
    """`input_format`, or the `FileError` that tells the user which names are read."""
    kind = input_format(name)
    if kind is None:
        json_hint = "; a .json file: write one object per line (JSON Lines) and name it .jsonl" if \
            name.lower().removesuffix(".gz").endswith(".json") else ""
        raise FileError(f"{name}: unsupported file type; name it {FORMAT_NAMES} (optionally with .gz){json_hint}",
                        "unsupported_format")
    return kind


class ChunkStart(NamedTuple):
    """Where a scale-out chunk starts inside its input, so its rows carry the serial run's line numbers."""

    first_line: int = 1
    """The number of the chunk's first physical line in the (decompressed) file."""
    header: list[str] | None = None
    """For CSV chunks after the first: the file's header, which this chunk does not contain."""
    decompressed: bool = False
    """The bytes are a gunzipped copy of a .gz input: do not gunzip them again."""
    file_start: bool = True
    """The bytes begin at the start of the file (a byte-order mark is looked for only there)."""
    delimiter: str = ","
    """For CSV chunks after the first: the field separator found in the file's header line."""


class ReadState:
    """Filled in while reading: bytes and physical lines consumed through the last line handed on, and the CSV
    header. After each row a reader yields, `end` is where the next row starts: a safe place to cut a file."""

    def __init__(self) -> None:
        self.end = 0
        self.lines = 0
        self.header: list[str] | None = None
        self.delimiter = ","


def read_records(
    stream: BinaryIO, name: str, settings: Settings, *, at: ChunkStart | None = None, state: ReadState | None = None
) -> Iterator[Item]:
    """Yield every row of `stream` in order as a `Record` or a `Rejected`.

    `name` (a key or path) picks the format and appears in every message. Raises
    `FileError` when the file as a whole cannot be read; rows yielded before still count.
    `at` reads a chunk of a file cut by the planner; `state` reports how far reading got.
    """
    kind = _known_format(name)
    at = at or ChunkStart()
    if at.file_start and not at.decompressed:
        size = _stream_size(stream)
        if size is not None and size > settings.max_object_bytes:
            raise FileError(too_large_reason(name, size, settings.max_object_bytes), "too_large")
    gz = kind[1] and not at.decompressed
    limit = settings.max_object_bytes if at.file_start and not at.decompressed else settings.max_decompressed_bytes
    chunks: Iterable[bytes] = read_chunks(stream, name, limit)
    if gz:
        chunks = gunzip(chunks, name, settings)
    yield from records_from_bytes(chunks, name, settings, at=at, state=state)


def records_from_bytes(
    chunks: Iterable[bytes], name: str, settings: Settings, *, at: ChunkStart | None = None,
    state: ReadState | None = None,
) -> Iterator[Item]:
    """The rows of already-decompressed bytes (see `read_records`)."""
    fmt = _known_format(name)[0]
    at = at or ChunkStart()
    if at.file_start:
        chunks = _as_utf8(chunks, name)
    lines = _physical_lines(chunks, settings.max_line_bytes, state)
    if fmt == "txt":
        yield from _read_txt(lines, name, settings, at.first_line)
    elif fmt == "csv":
        yield from _read_csv(lines, name, settings, at, state)
    else:
        yield from _read_jsonl(lines, name, settings, at.first_line)


def byte_order_mark(head: bytes) -> str | None:
    """The encoding a file's first bytes announce with a byte-order mark ("utf-8", "utf-16", "utf-32") or None."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


# --- bytes ---------------------------------------------------------------------------


def too_large_reason(name: str, size: int, max_bytes: int) -> str:
    """Why a file of known `size` is refused, in the words every path uses (serial, inline, planner)."""
    return f"{name} is {size} bytes, more than MAX_OBJECT_BYTES={max_bytes}; split it into smaller files"


def _stream_size(stream: BinaryIO) -> int | None:
    """The size of a stream backed by a file (None for a network body or bytes in memory)."""
    try:
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        return None


def read_chunks(stream: BinaryIO, name: str, max_bytes: int) -> Iterator[bytes]:
    """The stream in pieces of CHUNK bytes; a `FileError` once more than `max_bytes` came."""
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise FileError(
                f"{name} is larger than MAX_OBJECT_BYTES={max_bytes} bytes; split it into smaller files", "too_large"
            )
        yield chunk


def gunzip(chunks: Iterable[bytes], name: str, settings: Settings) -> Iterator[bytes]:
    """Inflate a (possibly multi-member) gzip stream, failing on bombs, corruption and truncation."""
    limit, ratio = settings.max_decompressed_bytes, settings.max_compression_ratio
    member = None
    consumed = produced = 0
    pending = b""
    for chunk in chunks:
        consumed += len(chunk)
        data = pending + chunk
        pending = b""
        while data:
            if member is None:
                if len(data) < 2:
                    pending = data
                    break
                if data[:2] != _GZIP_MAGIC:
                    if produced and not data.strip(b"\x00"):
                        break  # zero padding after the last member, as some tools write
                    if produced:
                        raise FileError(
                            f"{name} has data after its gzip stream that is not gzip; re-compress the file", "corrupt_gzip"
                        )
                    raise FileError(
                        f"{name} ends in .gz but is not gzip-compressed; compress it with gzip or drop the .gz suffix",
                        "not_gzip",
                    )
                member = zlib.decompressobj(wbits=31)
            while True:
                try:
                    out = member.decompress(data, CHUNK)
                except zlib.error as exc:
                    raise FileError(
                        f"{name} is a damaged gzip file ({exc}) after {produced} decompressed bytes; upload it again",
                        "corrupt_gzip",
                    ) from None
                data = member.unconsumed_tail
                if out:
                    produced += len(out)
                    if produced > limit:
                        raise FileError(
                            f"{name} inflates past MAX_DECOMPRESSED_BYTES={limit} bytes; split it into smaller files",
                            "too_large_decompressed",
                        )
                    if produced > RATIO_GRACE_BYTES and produced > ratio * consumed:
                        raise FileError(
                            f"{name} inflates more than MAX_COMPRESSION_RATIO={ratio} times its compressed size "
                            "(a gzip bomb?); it was not scored. Upload it uncompressed or raise the limit",
                            "compression_ratio",
                        )
                    yield out
                if member.eof:
                    data = member.unused_data
                    member = None
                    break
                if not data and len(out) < CHUNK:
                    break  # needs more input
    if member is not None or (pending and not (produced and pending == b"\x00")):
        raise FileError(
            f"{name} is truncated: its gzip stream ends early, after {produced} decompressed bytes; upload the whole file again",
            "truncated_gzip",
        )


def _as_utf8(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Drop a UTF-8 byte-order mark; transcode UTF-16/32 (recognised by their mark) to UTF-8."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= 4:
            break
    if not head:
        raise FileError(f"{name} is empty: there is nothing to score; upload a file with one tweet per line", "empty_file")
    if head.startswith(codecs.BOM_UTF8):
        yield head[3:]
        yield from it
        return
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if head.startswith(bom):
            decoder = codecs.getincrementaldecoder(codec)()
            try:
                for chunk in chain([head], it):
                    yield decoder.decode(chunk).encode("utf-8")
                yield decoder.decode(b"", final=True).encode("utf-8")
            except UnicodeDecodeError as exc:
                raise FileError(
                    f"{name} starts with a {codec.upper()} byte-order mark but is not valid {codec.upper()} "
                    f"({exc.reason}); re-save it as UTF-8",
                    "bad_encoding",
                ) from None
            return
    yield head
    yield from it


def _physical_lines(chunks: Iterable[bytes], max_bytes: int, state: ReadState | None = None) -> Iterator[bytes | None]:
    """Split on LF, CRLF or a lone CR; a line longer than `max_bytes` comes out as None, unread.
    With `state`, `state.end` / `state.lines` count the bytes and lines consumed through each line handed on."""
    buf = b""
    base = 0  # offset of buf[0] in the stream, kept only for `state`
    overflow = False  # the current line is already known to be too long; its bytes are dropped
    for chunk in chunks:
        buf = buf + chunk if buf else chunk
        if b"\r" not in buf:
            parts = buf.split(b"\n")
            buf = parts.pop()
            for part in parts:
                if state is not None:
                    base += len(part) + 1
                    state.end, state.lines = base, state.lines + 1
                if overflow or len(part) > max_bytes:
                    overflow = False
                    yield None
                else:
                    yield part
        else:
            start, end = 0, len(buf)
            for m in _EOL.finditer(buf):
                if m.end() == end and m.group() == b"\r":
                    break  # a "\n" may open the next chunk: decide then
                part = buf[start : m.start()]
                if state is not None:
                    state.end, state.lines = base + m.end(), state.lines + 1
                if overflow or len(part) > max_bytes:
                    overflow = False
                    yield None
                else:
                    yield part
                start = m.end()
            base += start
            buf = buf[start:]
        if len(buf) - buf.endswith(b"\r") > max_bytes:
            overflow = True
            kept = b"\r" if buf.endswith(b"\r") else b""
            base += len(buf) - len(kept)
            buf = kept
    if buf or overflow:
        last = buf[:-1] if buf.endswith(b"\r") else buf
        if state is not None:
            state.end, state.lines = base + len(buf), state.lines + 1
        yield None if overflow or len(last) > max_bytes else last


# --- rows ----------------------------------------------------------------------------


def _decode_line(raw: bytes | None, n: int, name: str, settings: Settings) -> str | Rejected:
    if raw is None:
        return Rejected(
            n,
            rc.LINE_TOO_LONG,
            f"line {n} of {name} is longer than MAX_LINE_BYTES={settings.max_line_bytes} bytes and was skipped; "
            "put one tweet on each line",
        )
    if b"\x00" in raw:
        return _nul(n, name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(
            n,
            rc.INVALID_UTF8,
            f"line {n} of {name} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}); "
            "re-save the file as UTF-8",
        )


def _nul(n: int, name: str) -> Rejected:
    return Rejected(
        n,
        rc.NUL_BYTES,
        f"line {n} of {name} contains NUL bytes; the file may be binary or UTF-16 without a byte-order mark: "
        "re-save it as UTF-8",
    )


def _check_text(text: str, n: int, name: str, settings: Settings) -> Rejected | None:
    if not text.strip():
        return Rejected(
            n, rc.EMPTY_TEXT, f"line {n} of {name} has no text; put one tweet on each line (blank rows are counted, not scored)"
        )
    if "\x00" in text:
        return _nul(n, name)
    if len(text) > settings.max_text_chars:
        return Rejected(
            n,
            rc.TEXT_TOO_LONG,
            f"line {n} of {name} has {len(text)} characters, more than MAX_TEXT_CHARS={settings.max_text_chars}; "
            "check that it is one tweet, or raise MAX_TEXT_CHARS",
        )
    return None


def _read_txt(lines: Iterable[bytes | None], name: str, settings: Settings, first_line: int = 1) -> Iterator[Item]:
    for n, raw in enumerate(lines, first_line):
        text = _decode_line(raw, n, name, settings)
        if isinstance(text, Rejected):
            yield text
        else:
            yield _check_text(text, n, name, settings) or Record(n, text)


def _json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words: "a number", "an array", ..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {list: "an array", dict: "an object", str: "a string"}.get(type(value), "a JSON value")


def _read_jsonl(lines: Iterable[bytes | None], name: str, settings: Settings, first_line: int = 1) -> Iterator[Item]:
    fields = (settings.text_column,) if settings.text_column else TEXT_COLUMNS
    example = settings.text_column or "text"
    wanted = f'"{example}" field' if settings.text_column else f"text field ({TEXT_COLUMN_NAMES})"
    for n, raw in enumerate(lines, first_line):
        line = _decode_line(raw, n, name, settings)
        if isinstance(line, Rejected):
            yield line
            continue
        if not line.strip():
            yield _check_text(line, n, name, settings)
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield Rejected(
                n,
                rc.MALFORMED_JSON,
                f'line {n} of {name} is not valid JSON ({exc}); write one JSON object per line, like {{"text": "…"}}',
            )
            continue
        if not isinstance(obj, dict):
            yield Rejected(
                n,
                rc.NOT_AN_OBJECT,
                f'line {n} of {name} is {_json_kind(obj)}, not an object; write {{"{example}": "…"}} on each line',
            )
            continue
        field = next((f for f in fields if obj.get(f) is not None), None)
        if field is None:
            yield Rejected(n, rc.MISSING_TEXT, f'line {n} of {name} has no {wanted}; add the tweet as "{example}"'
                           + ("" if settings.text_column else ", or set TEXT_COLUMN to the field that holds it"))
            continue
        text = obj[field]
        if not isinstance(text, str):
            yield Rejected(
                n,
                rc.TEXT_NOT_A_STRING,
                f'line {n} of {name}: "{field}" is {_json_kind(text)}, not a string; write the tweet as a JSON string',
            )
            continue
        id_field = next((f for f in ID_COLUMNS if obj.get(f) is not None), "id")
        ident = obj.get(id_field)
        if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
            yield Rejected(n, rc.INVALID_ID, f'line {n} of {name}: "{id_field}" must be a string or an integer')
            continue
        yield _check_text(text, n, name, settings) or Record(n, text, None if ident is None else str(ident))


def _csv_text_lines(lines: Iterable[bytes | None]) -> Iterator[str]:
    # surrogateescape keeps undecodable bytes visible, so the row holding them is rejected
    # after parsing instead of derailing the parser.
    for raw in lines:
        yield _TOO_LONG + "\n" if raw is None else raw.decode("utf-8", "surrogateescape") + "\n"


def sniff_delimiter(header_line: str, wanted: Iterable[str]) -> str:
    """The separator of a CSV file, from its header line: a comma unless only a semicolon, tab or bar splits the
    header into a column named as the text column (exports in locales that write decimal commas use `;`)."""
    for delimiter in CSV_DELIMITERS:
        try:
            columns = next(csv.reader([header_line], delimiter=delimiter))
        except (StopIteration, csv.Error):
            continue
        if any(c.strip().lower() in wanted for c in columns):
            return delimiter
    return ","


def _read_csv(
    lines: Iterable[bytes | None], name: str, settings: Settings, at: ChunkStart, state: ReadState | None
) -> Iterator[Item]:
    wanted = (settings.text_column.lower(),) if settings.text_column else TEXT_COLUMNS
    text_lines = _csv_text_lines(lines)
    header, delimiter = at.header, at.delimiter
    if header is None:
        first = next(text_lines, "")
        delimiter = sniff_delimiter(first, wanted)
        text_lines = chain([first], text_lines)
    reader = csv.reader(text_lines, strict=True, delimiter=delimiter)
    if header is None:
        try:
            header = next(reader)
        except (StopIteration, csv.Error):
            header = []
    if state is not None:
        state.header, state.delimiter = header, delimiter
    if not header or any(_TOO_LONG in h or _SURROGATE.search(h) for h in header):
        raise FileError(
            f"{name}: the first line must be a CSV header naming the columns ({TEXT_COLUMN_NAMES}; optional id)",
            "missing_header",
        )
    columns = [h.strip().lower() for h in header]
    text_at = next((columns.index(c) for c in wanted if c in columns), None)
    if text_at is None:
        hint = f"TEXT_COLUMN={settings.text_column!r} is not among them" if settings.text_column else (
            f"name the tweet column {TEXT_COLUMN_NAMES}, or set TEXT_COLUMN"
        )
        raise FileError(f"{name} has no text column: its header is {header!r}; {hint}", "missing_text_column")
    id_at = next((columns.index(c) for c in ID_COLUMNS if c in columns), None)
    width = len(header)
    skipped = at.first_line - 1  # physical lines before this chunk
    while True:
        start = reader.line_num + 1 + skipped
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num + skipped
            if "unexpected end of data" in str(exc):
                yield Rejected(
                    start,
                    rc.MALFORMED_CSV,
                    f"the record starting at line {start} of {name} opens a quoted field that is never closed "
                    f"(lines {start}-{end} were read as one field); close the quote, and double any quote inside it",
                )
                return
            if "field limit" in str(exc) and end > start:
                raise FileError(
                    f"{name}: the quoted field opened at line {start} is still open at line {end}; "
                    "close the quote, and double any quote inside a quoted field",
                    "unclosed_quote",
                ) from None
            if "field limit" in str(exc):
                yield Rejected(start, rc.TEXT_TOO_LONG, f"line {start} of {name} holds a field too long to be a tweet")
                continue
            yield Rejected(
                start,
                rc.MALFORMED_CSV,
                f"line {start} of {name} is not valid CSV ({exc}); quote fields that hold {SEPARATOR_NAMES[delimiter]}, "
                "quotes or line breaks",
            )
            continue
        yield _csv_row(row, start, name, settings, width, text_at, id_at, delimiter)


def _csv_row(row: list[str], n: int, name: str, settings: Settings, width: int, text_at: int, id_at: int | None,
             delimiter: str = ",") -> Item:
    if not row or row == [""]:
        return _check_text("", n, name, settings)
    if any(_TOO_LONG in f for f in row):
        return _decode_line(None, n, name, settings)
    if any(_SURROGATE.search(f) for f in row):
        return Rejected(n, rc.INVALID_UTF8, f"line {n} of {name} is not valid UTF-8; re-save the file as UTF-8")
    if len(row) != width:
        return Rejected(
            n,
            rc.MALFORMED_CSV,
            f"line {n} of {name} has {len(row)} fields but the header has {width}; "
            f"quote fields that contain {SEPARATOR_NAMES[delimiter]}",
        )
    ident = row[id_at] if id_at is not None else None
    return _check_text(row[text_at], n, name, settings) or Record(n, row[text_at], ident)
