"""Write the emoji → words table that `tweet-v2` normalization reads, from the `emoji` package (training only).

    python -m training.emoji_table          # rewrites layers/core/tweetmood/emoji_names.json

Serving reads the committed table, not the package: emoji names change between package versions, and a model
must see at serving time exactly the words it was trained on. Skin-tone variants are left out (the normalizer
drops skin-tone modifiers first), so the table stays small (~60 KB).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "layers" / "core" / "tweetmood" / "emoji_names.json"
_SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}


def build_table() -> dict[str, str]:
    """Every fully-qualified and unqualified emoji without a skin tone, mapped to its English CLDR name in words."""
    import emoji

    table: dict[str, str] = {}
    for symbol, info in emoji.EMOJI_DATA.items():
        if any(c in _SKIN_TONES for c in symbol):
            continue
        words = info["en"].strip(":").replace("_", " ")
        table.setdefault(symbol, words)
        table.setdefault(symbol.replace("\ufe0f", ""), words)
    table.pop("", None)
    return dict(sorted(table.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TABLE)
    args = parser.parse_args(argv)
    import emoji

    table = build_table()
    payload = {"source": f"emoji {emoji.__version__}", "names": table}
    args.output.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n",
                           encoding="utf-8")
    print(f"wrote {len(table)} emoji names to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
