"""Seeded, label-blind transformation of clean tweets into raw-looking ones (casing, punctuation, @, URLs, #, emoji).

The data set is lower-cased with punctuation removed; uploads are not. `rawify` puts back what real tweets carry
so that a model can be tested (`test_raw.txt`) and trained (augmentation) on text that looks like an upload.
Every choice is drawn from the `random.Random` passed in and none looks at the label, so nothing here can leak it.
docs/raw-test.md describes the steps and their probabilities.

    python -m training.rawify --in ../shared/data/emotion/test.txt --out runs/test_raw.txt --seed 7
"""

from __future__ import annotations

import argparse
import random
import string
from pathlib import Path
from typing import Sequence

from training.data import Example, load_examples

RAW_TEST_SEED = 7

# The data set writes contractions without the apostrophe; only unambiguous ones are restored
# ("ill", "id", "were", "lets", "shell", "well" are also English words and stay as they are).
CONTRACTIONS = {
    "im": "i'm", "ive": "i've", "dont": "don't", "didnt": "didn't", "doesnt": "doesn't", "cant": "can't",
    "wont": "won't", "isnt": "isn't", "wasnt": "wasn't", "arent": "aren't", "werent": "weren't",
    "couldnt": "couldn't", "shouldnt": "shouldn't", "wouldnt": "wouldn't", "havent": "haven't",
    "hasnt": "hasn't", "hadnt": "hadn't", "youre": "you're", "youve": "you've", "youll": "you'll",
    "theyre": "they're", "theyve": "they've", "weve": "we've", "thats": "that's", "whats": "what's",
    "theres": "there's", "aint": "ain't", "hes": "he's", "itll": "it'll"
}

# Emoji are drawn uniformly from this list whatever the label. They are deliberately neutral or ambiguous
# (no smiling, crying or angry faces), so they add realistic noise without acting as a signal for any emotion.
# All lie in the ranges normalize_tweet keeps, and none needs a variation selector.
EMOJI = ["👀", "✨", "🔥", "🤔", "🙃", "💭", "🎶", "☕", "📷", "📱", "🌙", "⚽", "🎧", "👇", "💯", "🤷", "📝", "🌧"]

GENERIC_HASHTAGS = ["life", "mood", "thoughts", "today", "random", "me", "work", "school", "weekend", "tbt",
                    "nofilter", "diary", "mondays", "latenight", "real"]

ENDINGS = [("", 0.25), (".", 0.25), ("!", 0.15), ("!!", 0.05), ("?", 0.08), ("...", 0.12), ("!?", 0.03),
           (" .", 0.02), ("!!!", 0.05)]

_HANDLE_PARTS = ["the", "real", "its", "just", "mr", "miss", "lil", "big", "sam", "jo", "kate", "dan", "alex",
                 "sky", "moon", "pixel", "coffee", "daily", "music", "news", "x", "official"]
_VOWELS = set("aeiouy")
_ALNUM = string.ascii_letters + string.digits


def _weighted(rng: random.Random, choices: Sequence[tuple[str, float]]) -> str:
    values, weights = zip(*choices)
    return rng.choices(values, weights=weights, k=1)[0]


def _handle(rng: random.Random) -> str:
    name = "".join(rng.choice(_HANDLE_PARTS) for _ in range(rng.randint(1, 2)))
    if rng.random() < 0.5:
        name += "_" if rng.random() < 0.3 else ""
        name += str(rng.randint(1, 999))
    return "@" + name


def _url(rng: random.Random) -> str:
    return "https://t.co/" + "".join(rng.choice(_ALNUM) for _ in range(10))


def _contract(word: str, rng: random.Random) -> str:
    """The apostrophe back in 80% of known contractions, a typographic one (’) in a fifth of those."""
    if word not in CONTRACTIONS or rng.random() >= 0.8:
        return word
    return CONTRACTIONS[word].replace("'", "’") if rng.random() < 0.2 else CONTRACTIONS[word]


def _elongate(word: str, rng: random.Random) -> str:
    """Repeat the last vowel (or the last letter) 2-5 extra times: "so" -> "sooo", "love" -> "loveee"."""
    for i in range(len(word) - 1, -1, -1):
        if word[i] in _VOWELS:
            return word[: i + 1] + word[i] * rng.randint(2, 5) + word[i + 1:]
    return word + word[-1] * rng.randint(2, 5)


def _case(words: list[str], rng: random.Random) -> list[str]:
    """lower (as is), Sentence case with a capital "I", or Title Case; then a few random ALL CAPS words."""
    mode = _weighted(rng, [("lower", 0.25), ("sentence", 0.55), ("title", 0.2)])
    out = []
    for i, w in enumerate(words):
        if mode == "title" or (mode == "sentence" and (i == 0 or w == "i" or w.startswith("i'"))):
            w = w[:1].upper() + w[1:]
        out.append(w)
    return [w.upper() if w.isalpha() and len(w) > 1 and rng.random() < 0.06 else w for w in out]


def rawify(text: str, rng: random.Random) -> str:
    """One clean, lower-cased tweet made to look raw; the order of the draws is fixed, so a seed fixes the output.

    Steps, each drawn independently of the label: apostrophes back in contractions, elongation, casing,
    commas and "..." between words, a closing mark, inline or appended hashtags, emoji (spaced or glued),
    @mentions in front (sometimes an "RT @x:"), a t.co URL at the end, and doubled spaces.
    """
    words = text.split()
    if not words:
        return text
    words = [_contract(w, rng) for w in words]
    words = [_elongate(w, rng) if w.isalpha() and rng.random() < 0.03 else w for w in words]
    words = _case(words, rng)

    for i in range(len(words) - 1):
        r = rng.random()
        if r < 0.05:
            words[i] += ","
        elif r < 0.07:
            words[i] += "..."
        elif r < 0.075:
            words[i] += ";"
    words[-1] += _weighted(rng, ENDINGS)

    candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4]
    if candidates and rng.random() < 0.15:
        i = rng.choice(candidates)
        words[i] = "#" + words[i]
    if rng.random() < 0.2:
        words.append("#" + rng.choice(GENERIC_HASHTAGS + [words[i].lower() for i in candidates[:3]]))

    if rng.random() < 0.35:
        emoji = "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.3:
            words[-1] += emoji
        else:
            words.append(emoji)

    r = rng.random()
    if r < 0.05:
        words = ["RT", _handle(rng) + ":"] + words
    elif r < 0.35:
        words = [_handle(rng) for _ in range(rng.randint(1, 2))] + words
    if rng.random() < 0.2:
        words.append(_url(rng))

    out = words[0]
    for w in words[1:]:
        out += ("  " if rng.random() < 0.03 else " ") + w
    return out


def rawify_examples(examples: Sequence[Example], seed: int = RAW_TEST_SEED) -> list[Example]:
    """Every example's text rawified with one `random.Random(seed)` in order; labels and line numbers kept."""
    rng = random.Random(seed)
    return [Example(text=rawify(e.text, rng), label=e.label, line=e.line) for e in examples]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.rawify", description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="input", required=True, type=Path, help="labelled file (text;label, .csv, .jsonl)")
    parser.add_argument("--out", required=True, type=Path, help="where to write text;label with the raw text")
    parser.add_argument("--seed", type=int, default=RAW_TEST_SEED, help=f"random seed (default {RAW_TEST_SEED})")
    args = parser.parse_args(argv)
    raw = rawify_examples(load_examples(args.input), args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(f"{e.text};{e.label}\n" for e in raw)
    print(f"wrote {len(raw)} raw examples to {args.out} (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
