"""tweet-v3 normalization: escaped line breaks are spaces, glued or drawn-out emoticons become words; v2 models keep v2."""

from __future__ import annotations

import pytest

from tweetmood.classifier import Classifier
from tweetmood.normalize import NORMALIZATION_VERSION, normalize_tweet, normalize_v2, normalize_v3

pytestmark = pytest.mark.unit


def test_new_models_are_trained_with_tweet_v3():
    assert NORMALIZATION_VERSION == "tweet-v3"
    assert normalize_tweet("day:)") == normalize_v3("day:)")


def test_an_escaped_line_break_is_a_space_not_a_stray_n_glued_to_the_next_word():
    assert normalize_v3("so sad\\nwhy me\\tok") == "so sad why me ok"
    assert normalize_v2("so sad\\nwhy me") == "so sad nwhy me"


def test_an_emoticon_glued_to_a_word_becomes_its_words():
    assert normalize_v3("great day:)") == "great day slightly smiling face"
    assert normalize_v3("miss you;)") == "miss you winking face"


def test_a_drawn_out_emoticon_reads_as_its_plain_form():
    assert normalize_v3(":((((") == normalize_v3(":(") == "frowning face"
    assert normalize_v3(":-)))") == "slightly smiling face"
    assert normalize_v3("XDDD") == "grinning squinting face"
    assert normalize_v3(">:(((") == "angry face"
    assert normalize_v3(":'((") == normalize_v3(";'(") == "crying face"


def test_equals_eyes_and_square_mouths_read_like_colon_ones():
    assert normalize_v3("=[ =] =/ =P") == "frowning face slightly smiling face confused face face with tongue"


def test_a_heart_glued_to_a_word_or_drawn_out_is_a_red_heart():
    assert normalize_v3("love<333 you") == "love red heart you"
    assert normalize_v3("</3") == "broken heart"


def test_an_emoticon_ending_an_escaped_line_is_still_found():
    assert normalize_v3("im sad :(\\nhelp") == "im sad frowning face help"


@pytest.mark.parametrize("text, expected", [
    ("at 12:30 today", "at 12 30 today"),
    ("Note:Does it work", "note does it work"),
    ("std::vector and C:\\Users", "std vector and c users"),
    ("options:(1) and x=Pi", "options 1 and x pi"),
    ("my xDrive", "my xdrive"),
    ("ratio 3:2", "ratio 3 2"),
])
def test_times_paths_and_code_that_look_like_emoticons_are_left_alone(text, expected):
    assert normalize_v3(text) == expected


def test_v3_agrees_with_v2_where_v2_had_nothing_to_miss():
    for text in ("love it <3 :) :( xD", "happy😀sad", "salt &amp; pepper", "@bob sooooo #HappyDay https://t.co/x!!!"):
        assert normalize_v3(text) == normalize_v2(text)


def test_a_v2_model_is_still_served_with_v2_normalization(tiny_model_with):
    classifier = Classifier.from_dir(tiny_model_with(normalization="tweet-v2"), threads=1)
    assert classifier.prepare(["day:)\\nok"]) == [normalize_v2("day:)\\nok")] == ["day nok"]


def test_a_v3_model_reads_glued_emoticons(tiny_model_with):
    classifier = Classifier.from_dir(tiny_model_with(normalization="tweet-v3"), threads=1)
    assert classifier.prepare(["day:)\\nok"]) == ["day slightly smiling face ok"]
