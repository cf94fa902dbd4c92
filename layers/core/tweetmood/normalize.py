"""One text normalization shared by training and serving, so both see the same text."""

from __future__ import annotations

import re
import unicodedata

NORMALIZATION_VERSION = "tweet-v1"

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


def normalize_tweet(text: str) -> str:
    """Map a raw tweet onto the clean, lower-cased form the training data uses.

    URLs and @mentions carry no emotion and are dropped, hashtags keep their word,
    apostrophes vanish ("don't" -> "dont", as in the data set), other punctuation
    becomes a space, emoji stand apart as their own tokens, runs of four or more of the same letter shrink to three.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = _HASHTAG.sub(r"\1", text)
    text = _APOSTROPHE.sub("", text)
    text = text.replace("_", " ")
    text = _PUNCT.sub(" ", text)
    text = _EMOJI.sub(r" \1 ", text)
    text = _REPEAT.sub(r"\1\1\1", text)
    return _SPACE.sub(" ", text).strip().lower()
