"""rawify turns clean tweets into raw-looking ones, reproducibly, without touching labels or the words normalization recovers."""

from __future__ import annotations

import difflib
import random

import pytest

from training.data import Example, load_examples
from training.rawify import EMOJI, main, rawify, rawify_examples
from tweetmood.normalize import normalize_tweet

pytestmark = pytest.mark.unit

CLEAN = [
    "i feel like my only role now would be to tear your sails with my pessimism and discontent",
    "im not sure the feeling of loss will ever go away but it may dull to a sweet feeling of nostalgia",
    "i dont feel guilty like im not going to be able to cook for him",
    "i am feeling outraged it shows everywhere",
    "i never make her separate from me because i dont ever want her to feel like im ashamed with her",
    "i feel so excited about the trip tomorrow and i cant wait to see everyone",
    "i was feeling a little vain when i did this one",
    "i feel romantic too",
]
LABELS = ["sadness", "sadness", "sadness", "anger", "sadness", "joy", "sadness", "love"]


def _examples(n: int = 200) -> list[Example]:
    return [Example(text=CLEAN[i % len(CLEAN)], label=LABELS[i % len(LABELS)], line=i + 1) for i in range(n)]


def test_the_same_seed_gives_the_same_raw_text_and_another_seed_does_not():
    examples = _examples()
    assert rawify_examples(examples, 7) == rawify_examples(examples, 7)
    assert rawify_examples(examples, 7) != rawify_examples(examples, 8)


def test_labels_and_line_numbers_are_kept():
    examples = _examples()
    raw = rawify_examples(examples, 7)
    assert [(e.label, e.line) for e in raw] == [(e.label, e.line) for e in examples]


def test_normalizing_raw_text_recovers_almost_all_of_the_clean_words():
    examples = _examples(400)
    ratios = []
    for clean, raw in zip(examples, rawify_examples(examples, 7)):
        # tweet-v2 spells the added emoji out as words ("fire"); the clean words are what must come back.
        text = "".join(c for c in raw.text if c not in "".join(EMOJI))
        words = [w for w in normalize_tweet(text).split() if any(c.isalnum() for c in w)]
        ratios.append(difflib.SequenceMatcher(a=clean.text.split(), b=words).ratio())
    assert sum(ratios) / len(ratios) > 0.93
    assert sum(r == 1.0 for r in ratios) / len(ratios) > 0.3


def test_raw_text_looks_raw_across_a_sample():
    raw = " ".join(e.text for e in rawify_examples(_examples(400), 7))
    assert any(c.isupper() for c in raw)
    for mark in ("!", "?", "...", ",", "@", "https://t.co/", "#", "'", "’", "  ", "I'm"):
        assert mark in raw, mark
    assert any(e in raw for e in EMOJI)
    assert any(w.isupper() and len(w) > 2 and w.isalpha() for w in raw.split())


def test_emoji_are_drawn_independently_of_the_label():
    rng_texts = rawify_examples([Example(text=CLEAN[0], label=label, line=1) for label in LABELS * 50], 3)
    same_label = rawify_examples([Example(text=CLEAN[0], label="joy", line=1) for _ in LABELS * 50], 3)
    assert [e.text for e in rng_texts] == [e.text for e in same_label]


def test_rawify_keeps_single_lines_without_surrounding_space():
    rng = random.Random(0)
    for text in CLEAN * 50:
        out = rawify(text, rng)
        assert "\n" not in out and "\t" not in out and out == out.strip()


def test_the_command_line_writes_text_label_lines_that_load_back(tmp_path):
    src, dst = tmp_path / "test.txt", tmp_path / "test_raw.txt"
    src.write_text("".join(f"{t};{label}\n" for t, label in zip(CLEAN, LABELS)), encoding="utf-8")
    assert main(["--in", str(src), "--out", str(dst), "--seed", "7"]) == 0
    loaded = load_examples(dst)
    assert [(e.text, e.label) for e in loaded] == [(e.text, e.label) for e in rawify_examples(load_examples(src), 7)]
