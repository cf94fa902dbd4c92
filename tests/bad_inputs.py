"""The bad-input matrix: every kind of upload that goes wrong in practice, and what must come of it.

Read by tests/unit/reliability (through `score_stream` and the key rules) and by
tests/integration/reliability (the same cases uploaded to S3 and delivered as events).
Each case ends in exactly one of: scored with `rows` rows of which `errors` are error rows,
a failed manifest whose reason holds `failure`, or a skip whose reason holds `skip`.
"""

from __future__ import annotations

import codecs
import gzip
from dataclasses import dataclass, field
from typing import Callable

MiB = 1 << 20


@dataclass(frozen=True)
class Case:
    name: str
    key: str
    body: Callable[[], bytes]
    rows: int | None = None
    """Rows in the file: the manifest's rows_read (for a failed file, the rows read before it failed)."""
    errors: dict[str, int] = field(default_factory=dict)
    """Error rows by code."""
    failure: str | None = None
    """The whole file fails; its manifest's reason contains this (and says what to do)."""
    skip: str | None = None
    """The object is never scored (nothing written); the skip reason contains this."""
    settings: dict = field(default_factory=dict)
    first_text: str | None = None
    """The text of the first scored row, where decoding is the point."""


def _lines(n: int) -> bytes:
    return b"".join(b"tweet number %d with a few words\n" % i for i in range(n))


def _truncated_gzip() -> bytes:
    data = gzip.compress(_lines(20000))
    return data[: len(data) // 2]


LONG_KEY = "incoming/" + "k" * (1024 - len("incoming/") - len(".txt")) + ".txt"  # 1024 bytes, S3's maximum
# The longest input key whose manifest key (scored/manifests/… .jsonl.manifest.json) still fits in 1024 bytes.
LONGEST_OK_KEY = "incoming/" + "k" * (1024 - len("scored/manifests/") - len(".txt.jsonl.manifest.json")) + ".txt"
ODD_KEY = "incoming/a b+c%20d/café ünï 日本 😀.txt"

CASES = [
    Case("invalid UTF-8 in one line", "incoming/utf8.txt", lambda: b"ok one\nbad \xff\xfe bytes\nok two\n",
         rows=3, errors={"invalid_utf8": 1}),
    Case("UTF-8 byte-order mark", "incoming/bom.txt", lambda: codecs.BOM_UTF8 + b"hello\nworld\n", rows=2,
         first_text="hello"),
    Case("UTF-16 with a byte-order mark", "incoming/utf16.txt", lambda: "héllo 😀\r\nwörld\r\n".encode("utf-16"),
         rows=2, first_text="héllo 😀"),
    Case("CRLF line endings", "incoming/crlf.txt", lambda: b"one\r\ntwo\r\nthree\r\n", rows=3),
    Case("lone CR line endings", "incoming/cr.txt", lambda: b"one\rtwo\rthree", rows=3),
    Case("NUL bytes", "incoming/nul.txt", lambda: b"a\x00b\nfine\n", rows=2, errors={"nul_bytes": 1}),
    Case("a 1 MiB line (at MAX_LINE_BYTES: read, too long for a tweet)", "incoming/mib.txt",
         lambda: b"short\n" + b"x" * MiB + b"\nafter\n", rows=3, errors={"text_too_long": 1}),
    Case("a line over 1 MiB (past MAX_LINE_BYTES: skipped unread)", "incoming/over.txt",
         lambda: b"short\n" + b"x" * (MiB + 1) + b"\nafter\n", rows=3, errors={"line_too_long": 1}),
    Case("10,000 blank lines", "incoming/blank.txt", lambda: b"first\n" + b"\n" * 10000 + b"last\n",
         rows=10002, errors={"empty_text": 10000}),
    Case("an empty file (a .gz holding nothing)", "incoming/empty.txt.gz", lambda: gzip.compress(b""),
         rows=0, failure="is empty"),
    Case("a zero-byte object", "incoming/zero.txt", lambda: b"", skip="zero-byte", failure="is empty", rows=0),
    Case("a CSV of only a header", "incoming/header.csv", lambda: b"id,text\r\n", rows=0),
    Case("CSV quoted delimiters", "incoming/q.csv", lambda: b'id,text\n1,"hello, world, again"\n', rows=1,
         first_text="hello, world, again"),
    Case("CSV escaped quotes", "incoming/e.csv", lambda: b'text\n"she said ""hi"""\n', rows=1,
         first_text='she said "hi"'),
    # A line break inside a quoted field comes out as "\n" whatever the file used (lines are split first).
    Case("CSV embedded newlines", "incoming/n.csv", lambda: b'id,text\n1,"two\r\nlines"\n2,after\n', rows=2,
         first_text="two\nlines"),
    Case("CSV unclosed quote", "incoming/u.csv", lambda: b'text\nok\n"never closed\nmore\n', rows=2,
         errors={"malformed_csv": 1}),
    Case("CSV unclosed quote running on past 128 KiB", "incoming/u2.csv",
         lambda: b'text\nfirst\n"opens here\n' + (b"x" * 100 + b"\n") * 2000, rows=1, failure="close the quote"),
    Case("CSV missing text column", "incoming/m.csv", lambda: b"author,date\nann,today\n", rows=0,
         failure="no text column"),
    Case("CSV ragged rows", "incoming/r.csv", lambda: b"text,id\nhello,1,extra\nshort\nok,2\n", rows=3,
         errors={"malformed_csv": 2}),
    Case("CSV separated by semicolons (a decimal-comma locale's export)", "incoming/semi.csv",
         lambda: b"id;text\n1;hello, world\n2;bye\n", rows=2, first_text="hello, world"),
    Case("a .gz of a million blank lines and one tweet (the batching window is bounded by rows, not tweets)",
         "incoming/blanks.txt.gz", lambda: gzip.compress(b"\n" * 1_000_000 + b"a tweet at last\n", 9), rows=1_000_001,
         errors={"empty_text": 1_000_000}),
    Case("JSONL broken line", "incoming/b.jsonl", lambda: b'{"text": "ok"}\n{"text": "broken"\n{"text": "ok2"}\n',
         rows=3, errors={"malformed_json": 1}),
    Case("JSONL non-object lines", "incoming/o.jsonl", lambda: b'["a", "list"]\n42\n"str"\n{"text": "ok"}\n',
         rows=4, errors={"not_an_object": 3}),
    Case("JSONL missing text", "incoming/t.jsonl", lambda: b'{"body": "wrong field"}\n{"text": null}\n', rows=2,
         errors={"missing_text": 2}),
    Case("JSONL non-string text", "incoming/s.jsonl", lambda: b'{"text": 5}\n{"text": ["a"]}\n{"text": {}}\n',
         rows=3, errors={"text_not_a_string": 3}),
    Case("truncated gzip", "incoming/trunc.txt.gz", _truncated_gzip, failure="truncated"),
    Case("gzip bomb (ratio cap)", "incoming/bomb.txt.gz", lambda: gzip.compress(b"\x00" * (20 * MiB), 9),
         failure="MAX_COMPRESSION_RATIO"),
    Case("gzip bomb (size cap, settable)", "incoming/bomb2.txt.gz", lambda: gzip.compress(_lines(100000), 9),
         failure="MAX_DECOMPRESSED_BYTES=1048576", settings={"max_decompressed_bytes": MiB,
                                                            "max_compression_ratio": 10**6}),
    Case("a .gz that is not gzip", "incoming/fake.txt.gz", lambda: b"plain text, not gzip\n", rows=0,
         failure="not gzip-compressed"),
    Case("a file larger than MAX_OBJECT_BYTES", "incoming/big.txt", lambda: _lines(100), rows=0,
         failure="MAX_OBJECT_BYTES=1000", settings={"max_object_bytes": 1000}),
    Case("a key with a '..' segment", "incoming/../scored/x.txt", lambda: b"hi\n", skip="'..'"),
    Case("a 1024-byte key (its results' keys would be longer)", LONG_KEY, lambda: b"hi\n", skip="over S3's 1024"),
    Case("the longest key whose results fit in 1024 bytes", LONGEST_OK_KEY, lambda: b"hi\n", rows=1),
    Case("a key with spaces, '+', '%' and non-ASCII", ODD_KEY, lambda: b"hi there\n", rows=1),
    Case("an object under the output prefix (never scored: no loop)", "scored/x.txt.jsonl",
         lambda: b'{"line": 1}\n', skip="OUTPUT_PREFIX"),
    Case("a result-looking .txt under the output prefix", "scored/loop.txt", lambda: b"hi\n", skip="OUTPUT_PREFIX"),
]
