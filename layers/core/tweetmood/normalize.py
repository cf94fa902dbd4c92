"""One text normalization shared by training and serving, so both see the same text.

Two versions exist; a model directory names the one it was trained with (`model.json["normalization"]`) and the
classifier applies exactly that one:
- `tweet-v1`: the clean, lower-cased, punctuation-free form of the emotion corpus; emoji kept as symbols (which
  the WordPiece vocabulary does not know, so the model saw `[UNK]`).
- `tweet-v2` (new models): v1 plus HTML entities unescaped, emoji and emoticons turned into words the tokenizer
  knows ("😭" -> "loudly crying face"), skin tones, zero-width joiners and variation selectors dropped.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Callable

NORMALIZATION_VERSION = "tweet-v2"
"""What new models are trained with."""

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w{1,30}")
_HASHTAG = re.compile(r"#(\w+)")
_APOSTROPHE = re.compile(r"[’'`´]")
# The training data is lower-cased with punctuation removed; anything that is not a
# letter, digit, whitespace or a symbol such as an emoji becomes a space.
_PUNCT = re.compile(r"[^\w\s\U0001F000-\U0001FAFF\u2600-\u27BF]")
_REPEAT = re.compile(r"(\w)\1{3,}")
# An emoji glued to a word ("happy😀") would make the WordPiece tokenizer drop the whole word as [UNK].
_EMOJI = re.compile(r"([\U0001F000-\U0001FAFF\u2600-\u27BF])")
_SPACE = re.compile(r"\s+")

# v2: skin-tone modifiers, variation selectors, zero-width joiners and keycap combiners left over after matching.
_EMOJI_DEBRIS = re.compile("[\U0001F3FB-\U0001F3FF\uFE0E\uFE0F\u200D\u20E3]")
_SKIN_TONE = re.compile("[\U0001F3FB-\U0001F3FF]")
_EMOJI_TABLE = Path(__file__).with_name("emoji_names.json")
# Western emoticons, written as the words of the emoji they stand for. Matched only as whole tokens
# (space, start or end around them), so "xD" in "xDrive" or ":/" in a ratio is left alone.
EMOTICONS: dict[str, str] = {
    ":)": "slightly smiling face", ":-)": "slightly smiling face", "=)": "slightly smiling face",
    ":]": "slightly smiling face", "(:": "slightly smiling face", "^_^": "smiling face with smiling eyes",
    ":D": "grinning face with big eyes", ":-D": "grinning face with big eyes", "=D": "grinning face with big eyes",
    "xD": "grinning squinting face", "XD": "grinning squinting face", "xd": "grinning squinting face",
    ";)": "winking face", ";-)": "winking face", ";D": "winking face",
    ":(": "frowning face", ":-(": "frowning face", "=(": "frowning face", ":[": "frowning face",
    ":'(": "crying face", ":'-(": "crying face", ";(": "crying face", "T_T": "crying face",
    ":'')": "face with tears of joy", ":')": "face with tears of joy",
    ">:(": "angry face", ">:-(": "angry face",
    ":o": "face with open mouth", ":O": "face with open mouth", ":-o": "face with open mouth",
    ":-O": "face with open mouth", "o_O": "face with open mouth", "O_o": "face with open mouth",
    ":p": "face with tongue", ":P": "face with tongue", ":-p": "face with tongue", ":-P": "face with tongue",
    ":/": "confused face", ":-/": "confused face", ":\\": "confused face", ":|": "neutral face",
    "-_-": "expressionless face", ":*": "face blowing a kiss", ":-*": "face blowing a kiss",
    "<3": "red heart", "<33": "red heart", "<333": "red heart", "</3": "broken heart",
}


def _v1_tail(text: str) -> str:
    """The part both versions share after their own first steps: links, mentions, hashtags, punctuation, case."""
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = _HASHTAG.sub(r"\1", text)
    text = _APOSTROPHE.sub("", text)
    text = text.replace("_", " ")
    text = _PUNCT.sub(" ", text)
    text = _EMOJI.sub(r" \1 ", text)
    text = _REPEAT.sub(r"\1\1\1", text)
    return _SPACE.sub(" ", text).strip().lower()


def normalize_v1(text: str) -> str:
    """Map a raw tweet onto the clean, lower-cased form the training data uses.

    URLs and @mentions carry no emotion and are dropped, hashtags keep their word,
    apostrophes vanish ("don't" -> "dont", as in the data set), other punctuation
    becomes a space, emoji stand apart as their own tokens, runs of four or more of the same letter shrink to three.
    """
    return _v1_tail(unicodedata.normalize("NFKC", text))


@lru_cache(maxsize=1)
def _emoji_table() -> tuple[re.Pattern, dict[str, str], int]:
    """The committed emoji table (see training/emoji_table.py), a pattern for runs of characters from the code
    point blocks emoji live in (keycaps too), and the longest emoji in code points.

    The blocks are a superset (a few ranges match far faster than 1,400 single characters); characters in a run
    that are no emoji pass through unchanged, so `don’t` keeps its apostrophe for the later steps.
    """
    names: dict[str, str] = json.loads(_EMOJI_TABLE.read_text(encoding="utf-8"))["names"]
    ranges: list[list[int]] = []
    for point in sorted({ord(c) for symbol in names for c in symbol} - set(map(ord, "#*0123456789"))):
        if ranges and point - ranges[-1][1] <= 256:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    blocks = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges)
    runs = re.compile(r"(?:[#*0-9]\uFE0F?\u20E3|[" + blocks + r"])+")
    return runs, names, max(map(len, names))


def _name_run(run: str, names: dict[str, str], longest: int) -> str:
    """Longest-first matching inside one run: each emoji becomes its name between spaces; other characters stay."""
    out, i = [], 0
    while i < len(run):
        for size in range(min(longest, len(run) - i), 0, -1):
            name = names.get(run[i: i + size])
            if name is not None:
                out.append(f" {name} ")
                i += size
                break
        else:
            out.append(run[i])
            i += 1
    return "".join(out)


def emoji_to_words(text: str) -> str:
    """Each emoji (ZWJ sequences and flags included, skin tones dropped) becomes its name between spaces."""
    if text.isascii():
        return text
    runs, names, longest = _emoji_table()
    text = runs.sub(lambda m: _name_run(_SKIN_TONE.sub("", m.group(0)), names, longest), text)
    return _EMOJI_DEBRIS.sub(" ", text)


def emoticons_to_words(text: str) -> str:
    """`:)` -> "slightly smiling face", `<3` -> "red heart", … (whole whitespace-separated tokens only)."""
    return " ".join(EMOTICONS.get(token, token) for token in text.split())


def normalize_v2(text: str) -> str:
    """v1 for real tweets: `&amp;` and friends unescaped, emoticons and emoji turned into words, then v1's steps.

    Emoticons are matched before NFKC (which would not change them) and before punctuation is stripped;
    emoji are matched after NFKC so that compatibility forms reach the table in their canonical shape.
    """
    text = html.unescape(text)
    text = emoticons_to_words(_URL.sub(" ", text))
    text = emoji_to_words(unicodedata.normalize("NFKC", text))
    return _v1_tail(text)


NORMALIZERS: dict[str, Callable[[str], str]] = {"tweet-v1": normalize_v1, "tweet-v2": normalize_v2}


def normalizer_for(version: str) -> Callable[[str], str] | None:
    """The function for a model's `normalization` field; None for "none" (the model reads raw text)."""
    if version == "none":
        return None
    try:
        return NORMALIZERS[version]
    except KeyError:
        raise ValueError(f"normalization {version!r} is not one of {sorted(NORMALIZERS) + ['none']}") from None


def normalize_tweet(text: str, version: str = NORMALIZATION_VERSION) -> str:
    """Normalize with `version` (default: the one new models are trained with)."""
    return NORMALIZERS[version](text)
