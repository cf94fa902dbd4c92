"""What a reader yields: a tweet to score, a rejected row, or a whole-file failure."""

from __future__ import annotations

from typing import NamedTuple

# Row error codes: each rejected row carries one, and the manifest counts them.
INVALID_UTF8 = "invalid_utf8"
EMPTY_TEXT = "empty_text"
TEXT_TOO_LONG = "text_too_long"
LINE_TOO_LONG = "line_too_long"
NUL_BYTES = "nul_bytes"
MALFORMED_CSV = "malformed_csv"
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
TEXT_NOT_A_STRING = "text_not_a_string"
INVALID_ID = "invalid_id"

ERROR_CODES = (
    INVALID_UTF8,
    EMPTY_TEXT,
    TEXT_TOO_LONG,
    LINE_TOO_LONG,
    NUL_BYTES,
    MALFORMED_CSV,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    MISSING_TEXT,
    TEXT_NOT_A_STRING,
    INVALID_ID,
)


class Record(NamedTuple):
    """One tweet to score; `line` is where it starts in the (decompressed) file, from 1."""

    line: int
    text: str
    id: str | None = None


class Rejected(NamedTuple):
    """One input row that cannot be scored, with a message a person can act on."""

    line: int
    error: str
    message: str


class FileError(Exception):
    """The whole file cannot be scored (not gzip, a gzip bomb, no text column …).

    `reason` says which file, what was wrong and what to do; rows yielded before it
    was raised still count.
    """

    def __init__(self, reason: str, code: str = "file_error"):
        super().__init__(reason)
        self.reason = reason
        self.code = code
