"""read_records: every format, encoding, line ending and failure, with every row accounted for."""

from __future__ import annotations

import codecs
import gzip
import io

import pytest

from tweetmood import records as rc
from tweetmood.readers import read_records
from tweetmood.records import FileError, Record, Rejected
from tweetmood.settings import Settings

pytestmark = pytest.mark.unit
MiB = 1 << 20


def read(data: bytes, name: str = "incoming/t.txt", **settings) -> list[Record | Rejected]:
    items = list(read_records(io.BytesIO(data), name, Settings(**settings)))
    lines = [i.line for i in items]
    assert lines == sorted(set(lines)), "line numbers must rise strictly"
    return items


def read_until_failure(data: bytes, name: str, **settings) -> tuple[list, FileError]:
    items = []
    with pytest.raises(FileError) as failure:
        for item in read_records(io.BytesIO(data), name, Settings(**settings)):
            items.append(item)
    return items, failure.value


def texts(items) -> list[str]:
    return [i.text for i in items if isinstance(i, Record)]


def errors(items) -> list[tuple[int, str]]:
    return [(i.line, i.error) for i in items if isinstance(i, Rejected)]


# --- text files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"one\ntwo\nthree\n", b"one\r\ntwo\r\nthree\r\n", b"one\rtwo\rthree\r", b"one\r\ntwo\rthree", b"\xef\xbb\xbfone\ntwo\nthree"],
    ids=["lf", "crlf", "lone-cr", "mixed-no-final-newline", "utf8-bom"],
)
def test_every_line_ending_and_a_utf8_bom_give_the_same_tweets(data):
    items = read(data)
    assert items == [Record(1, "one"), Record(2, "two"), Record(3, "three")]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_decoded(codec):
    text = "héllo wörld 😀\r\nsecond line\n"
    data = codecs.BOM_UTF16_BE + text.encode(codec) if codec == "utf-16-be" else text.encode(codec)
    assert read(data) == [Record(1, "héllo wörld 😀"), Record(2, "second line")]


def test_a_utf16_file_cut_mid_character_fails_with_a_reason():
    items, failure = read_until_failure("hi\nthere".encode("utf-16")[:-1], "x.txt")
    assert failure.code == "bad_encoding" and "UTF-8" in failure.reason


def test_blank_lines_are_reported_not_dropped():
    items = read(b"first\n\n   \nlast\n")
    assert texts(items) == ["first", "last"]
    assert errors(items) == [(2, rc.EMPTY_TEXT), (3, rc.EMPTY_TEXT)]
    assert len(items) == 4


def test_an_undecodable_line_is_an_error_row_and_the_rest_go_on():
    items = read(b"ok one\nbad \xff\xfe bytes\nok two\n", name="incoming/mixed.txt")
    assert texts(items) == ["ok one", "ok two"]
    (bad,) = [i for i in items if isinstance(i, Rejected)]
    assert (bad.line, bad.error) == (2, rc.INVALID_UTF8)
    assert "line 2 of incoming/mixed.txt" in bad.message and "UTF-8" in bad.message


def test_nul_bytes_make_their_line_an_error_row():
    items = read(b"a\x00b\nfine\n")
    assert errors(items) == [(1, rc.NUL_BYTES)] and texts(items) == ["fine"]


def test_an_over_long_line_is_rejected_and_the_next_line_still_read():
    items = read(b"short\n" + b"x" * 5 * MiB + b"\r\nafter\n", max_line_bytes=MiB)
    assert items[0] == Record(1, "short")
    assert (items[1].line, items[1].error) == (2, rc.LINE_TOO_LONG)
    assert items[2] == Record(3, "after")


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r", b""])
def test_a_long_line_ending_at_a_chunk_boundary_counts_once(ending):
    # 65535 bytes + CR puts the CR last in the first 64 KiB chunk and its LF first in the next.
    items = read(b"y" * 65535 + ending + b"next", max_line_bytes=1000)
    if ending:
        assert errors(items) == [(1, rc.LINE_TOO_LONG)] and items[1] == Record(2, "next")
    else:
        assert errors(items) == [(1, rc.LINE_TOO_LONG)] and len(items) == 1


def test_crlf_split_across_chunks_is_one_line_break():
    data = b"a" * 65535 + b"\r\nb"
    assert [i.line for i in read(data)] == [1, 2]


def test_text_longer_than_max_text_chars_is_rejected():
    items = read(b"x" * 11 + b"\nshort\n", max_text_chars=10)
    assert errors(items) == [(1, rc.TEXT_TOO_LONG)] and texts(items) == ["short"]


def test_an_empty_file_fails_with_a_reason():
    _, failure = read_until_failure(b"", "incoming/empty.txt")
    assert failure.code == "empty_file" and "incoming/empty.txt" in failure.reason


def test_an_unsupported_suffix_fails_with_a_reason():
    _, failure = read_until_failure(b"hello\n", "incoming/tweets.xlsx")
    assert failure.code == "unsupported_format" and ".csv" in failure.reason


def test_a_file_over_max_object_bytes_fails():
    items, failure = read_until_failure(b"tweet\n" * 100, "t.txt", max_object_bytes=64)
    assert failure.code == "too_large"


# --- CSV -------------------------------------------------------------------------------


def test_csv_handles_quoted_commas_doubled_quotes_and_embedded_newlines():
    data = b'id,text\r\n1,"hello, world"\r\n2,"she said ""hi"""\r\n3,"two\nlines"\r\n4,after\r\n'
    assert read(data, name="in.csv") == [
        Record(2, "hello, world", "1"),
        Record(3, 'she said "hi"', "2"),
        Record(4, "two\nlines", "3"),
        Record(6, "after", "4"),
    ]


@pytest.mark.parametrize("header", [b"ID,Tweet", b"\xef\xbb\xbfid,TEXT", b"author, Content ,id"])
def test_csv_text_column_is_found_whatever_its_case(header):
    row = b"7,hi there" if header.count(b",") == 1 else b"ann,hi there,7"
    (record,) = read(header + b"\n" + row + b"\n", name="in.csv")
    assert record == Record(2, "hi there", "7")


def test_csv_text_column_can_be_named_in_settings():
    (record,) = read(b"body,text\nthe tweet,not this\n", name="in.csv", text_column="Body")
    assert record.text == "the tweet" and record.id is None


@pytest.mark.parametrize("sep", [b";", b"\t", b"|"])
def test_csv_separated_by_semicolons_tabs_or_bars_is_read_when_its_header_names_the_text_column(sep):
    data = sep.join([b"id", b"text"]) + b"\n" + sep.join([b"7", b'"hi, there"']) + b"\n" + sep.join([b"8", b"yo"])
    assert read(data, name="in.csv") == [Record(2, "hi, there", "7"), Record(3, "yo", "8")]



def test_a_tsv_is_read_as_csv_with_its_tabs_found_from_the_header():
    assert read(b"id\ttext\n1\thello, there\n", name="incoming/x.tsv") == [Record(2, "hello, there", "1")]


def test_a_ragged_row_of_a_semicolon_separated_csv_is_told_to_quote_its_semicolons():
    (rejected,) = read(b"id;text\n1;hi there; friend\n", name="in.csv")
    assert rejected.error == "malformed_csv" and "has 3 fields but the header has 2" in rejected.message
    assert rejected.message.endswith("quote fields that contain semicolons")


def test_a_comma_separated_header_wins_over_a_semicolon_inside_a_column_name():
    (record,) = read(b"id;no,text\n1,hello; world\n", name="in.csv")
    assert record == Record(2, "hello; world", None)


def test_csv_without_a_text_column_fails_naming_the_header():
    _, failure = read_until_failure(b"author,date\nann,2024\n", "in.csv")
    assert failure.code == "missing_text_column"
    assert "author" in failure.reason and "TEXT_COLUMN" in failure.reason


def test_csv_with_only_a_header_has_no_rows():
    assert read(b"id,text\r\n", name="in.csv") == []


def test_csv_ragged_rows_are_error_rows():
    items = read(b"text,id\nhello,1,extra\nshort\nok,2\n", name="in.csv")
    assert errors(items) == [(2, rc.MALFORMED_CSV), (3, rc.MALFORMED_CSV)]
    assert items[-1] == Record(4, "ok", "2")
    assert "header has 2" in items[0].message


def test_csv_unclosed_quote_at_the_end_is_one_error_row():
    items = read(b'text\nok\n"never closed\nmore\n', name="in.csv")
    assert texts(items) == ["ok"]
    assert errors(items) == [(3, rc.MALFORMED_CSV)] and "never closed" in items[1].message


def test_csv_unclosed_quote_running_on_fails_the_file_after_counting_earlier_rows():
    data = b'text\nfirst\n"opens here\n' + (b"x" * 100 + b"\n") * 2000
    items, failure = read_until_failure(data, "in.csv")
    assert items == [Record(2, "first")]
    assert failure.code == "unclosed_quote" and "line 3" in failure.reason


def test_csv_garbage_after_a_closing_quote_is_an_error_row():
    items = read(b'text\n"a"b\nok\n', name="in.csv")
    assert errors(items) == [(2, rc.MALFORMED_CSV)] and items[1] == Record(3, "ok")


def test_csv_blank_undecodable_and_nul_rows_are_error_rows():
    items = read(b"text\na\n\nbad \xff\nnul\x00here\nz\n", name="in.csv")
    assert texts(items) == ["a", "z"]
    assert errors(items) == [(3, rc.EMPTY_TEXT), (4, rc.INVALID_UTF8), (5, rc.NUL_BYTES)]


def test_csv_over_long_line_is_rejected_and_parsing_goes_on():
    items = read(b"text\n" + b"q" * 4000 + b"\nafter\n", name="in.csv", max_line_bytes=100)
    assert errors(items) == [(2, rc.LINE_TOO_LONG)] and items[1] == Record(3, "after")


# --- JSON Lines ------------------------------------------------------------------------


def test_jsonl_reads_text_and_optional_id():
    data = b'{"id": "a1", "text": "hi"}\n{"id": 42, "text": "yo"}\n{"text": "no id"}\n'
    assert read(data, name="x.jsonl") == [Record(1, "hi", "a1"), Record(2, "yo", "42"), Record(3, "no id", None)]


def test_jsonl_broken_non_object_and_missing_text_lines_are_error_rows():
    data = b'\n'.join([
        b'{"text": "good"}',
        b'{"text": "broken"',
        b'["a", "list"]',
        b'{"body": "wrong field"}',
        b'{"text": 5}',
        b'{"text": "x", "id": {"nested": 1}}',
        b"",
        b'{"text": "also good"}',
    ])
    items = read(data, name="x.jsonl")
    assert texts(items) == ["good", "also good"]
    assert errors(items) == [
        (2, rc.MALFORMED_JSON),
        (3, rc.NOT_AN_OBJECT),
        (4, rc.MISSING_TEXT),
        (5, rc.TEXT_NOT_A_STRING),
        (6, rc.INVALID_ID),
        (7, rc.EMPTY_TEXT),
    ]
    assert all("of x.jsonl" in i.message for i in items if isinstance(i, Rejected))
    messages = {i.line: i.message for i in items if isinstance(i, Rejected)}
    assert "is an array, not an object" in messages[3] and '"text" is a number, not a string' in messages[5]
    assert "has no text field (full_text, text, tweet, tweet_text or content)" in messages[4]
    assert messages[4].endswith("or set TEXT_COLUMN to the field that holds it")


def test_jsonl_text_field_can_be_named_in_settings():
    assert texts(read(b'{"body": "here"}\n', name="x.ndjson", text_column="body")) == ["here"]
    (missing,) = read(b'{"text": "not this one"}\n', name="x.ndjson", text_column="body")
    assert missing.error == rc.MISSING_TEXT and missing.message.endswith('has no "body" field; add the tweet as "body"')


def test_jsonl_exported_from_the_twitter_api_is_read_by_full_text_and_id_str():
    data = (b'{"id": 1796522045035241472, "id_str": "1796522045035241472", "full_text": "the whole tweet",'
            b' "text": "the whole tw\u2026"}\n{"id_str": "17", "tweet": "another"}\n')
    assert read(data, name="x.jsonl") == [Record(1, "the whole tweet", "1796522045035241472"), Record(2, "another", "17")]


def test_csv_with_a_tweet_text_column_and_a_tweet_id_is_read():
    (record,) = read(b"tweet_id,user,tweet_text\n9,ann,hello there\n", name="in.csv")
    assert record == Record(2, "hello there", "9")


# --- gzip ------------------------------------------------------------------------------

SAMPLES = {
    "a.txt": b"one\r\n\ntwo \xff\nthree\n",
    "a.csv": b'id,text\n1,"x, y"\n2,"multi\nline"\n3,ragged,row\n',
    "a.jsonl": b'{"text": "j1"}\nnot json\n{"id": 3, "text": "j2"}\n',
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_gzip_gives_the_same_rows_as_the_plain_file(name):
    def rows(items):  # messages name the file, which differs
        return [i[:2] if isinstance(i, Rejected) else i for i in items]

    plain = rows(read(SAMPLES[name], name=name))
    assert rows(read(gzip.compress(SAMPLES[name]), name=name + ".gz")) == plain
    assert len(plain) >= 3


def test_multi_member_gzip_is_read_whole():
    data = gzip.compress(b"first\n") + gzip.compress(b"second\n") + b"\x00" * 8
    assert texts(read(data, name="m.txt.gz")) == ["first", "second"]


def test_truncated_gzip_fails_after_counting_the_rows_read():
    lines = b"".join(b"tweet number %d with some words\n" % i for i in range(20000))
    data = gzip.compress(lines)
    items, failure = read_until_failure(data[: len(data) // 2], "t.txt.gz")
    assert failure.code == "truncated_gzip" and "t.txt.gz" in failure.reason
    assert len(items) > 1000 and items[-1].line == len(items)


def test_a_gz_that_is_not_gzip_fails_with_a_reason():
    _, failure = read_until_failure(b"plain text\n", "t.txt.gz")
    assert failure.code == "not_gzip" and "gzip" in failure.reason


def test_damaged_gzip_fails_with_a_reason():
    data = bytearray(gzip.compress(b"some tweet text here\n" * 200))
    data[-6] ^= 0xFF  # inside the CRC/length trailer
    _, failure = read_until_failure(bytes(data), "t.txt.gz")
    assert failure.code == "corrupt_gzip"


def test_gzip_bomb_is_stopped_by_the_ratio_cap():
    bomb = gzip.compress(b"\x00" * (20 * MiB), compresslevel=9)
    _, failure = read_until_failure(bomb, "bomb.txt.gz", max_line_bytes=MiB)
    assert failure.code == "compression_ratio" and "MAX_COMPRESSION_RATIO" in failure.reason


def test_gzip_past_max_decompressed_bytes_fails():
    data = gzip.compress(b"a tweet\n" * 1000)
    items, failure = read_until_failure(data, "t.txt.gz", max_decompressed_bytes=4000, max_compression_ratio=10**6)
    assert failure.code == "too_large_decompressed"


def test_a_small_very_compressible_gzip_is_not_mistaken_for_a_bomb():
    items = read(gzip.compress(b"same tweet\n" * 40000), name="t.txt.gz")
    assert len(items) == 40000
