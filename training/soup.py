"""Model soup: average the weights of fine-tuned runs that share a base, kept while the selection score does not drop.

Runs fine-tuned from the same pretrained encoder with the same seed sit in one basin, so their
averaged weights score like an ensemble at the cost of one model (Wortsman et al., 2022,
"Model soups"). The greedy soup adds runs best-first while the score the runs were selected on
(emotion validation macro-F1, averaged with held-out E-c train accuracy when real tweets are in
the data) does not drop; the uniform soup of every compatible run is scored too, and the better
of the two is kept. Never test data, never E-c dev: the test files are scored once, at the end.

    python -m training.soup --runs runs/student-a runs/student-b runs/student-c --output-dir runs/soup
    python -m training.soup --runs runs/sweep --output-dir runs/soup    # every finished run of a sweep
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import torch

from training.data import Splits, load_splits, resolve_real_tweets_dir, single_label
from training.rawify import rawify_examples
from training.transformer import (TransformerArgs, TransformerResult, _evaluate, _load, _write,
                                  device_name, encode, make_preprocess, resolve_device, selection_score)

log = logging.getLogger(__name__)


def _run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Finished runs: each path is a run (holding metrics.json) or a sweep directory of runs."""
    found = []
    for path in paths:
        found += [path] if (path / "metrics.json").is_file() else sorted(m.parent for m in path.glob("*/metrics.json"))
    if not found:
        raise RuntimeError(f"{', '.join(map(str, paths))}: no finished runs (metrics.json) to average")
    return found


def _candidates(paths: Sequence[Path]) -> list[dict]:
    """Finished runs, best first by the score they were selected on (`selection`; older runs: val macro-F1)."""
    found = []
    for run in _run_dirs(paths):
        m = json.loads((run / "metrics.json").read_text())
        found.append({"name": run.name, "dir": run, "metrics": m,
                      "key": (m.get("selection", m["val"]["macro_f1"]), m["val"]["accuracy"])})
    return sorted(found, key=lambda c: c["key"], reverse=True)


def pretrained_base(base_model: str) -> str:
    """The pretrained encoder a run started from, following runs that started from another run's checkpoint (a
    quantization-aware pass over a student, say) back through that run's metrics.json."""
    seen = set()
    while base_model not in seen:
        seen.add(base_model)
        metrics = Path(base_model).parent / "metrics.json"
        if Path(base_model).name != "checkpoint" or not metrics.is_file():
            break
        base_model = json.loads(metrics.read_text()).get("args", {}).get("base_model", base_model)
    return base_model


def _architecture(run: Path) -> tuple:
    config = json.loads((run / "checkpoint" / "config.json").read_text())
    return tuple(config.get(k) for k in ("model_type", "num_hidden_layers", "hidden_size", "num_labels"))


def _compatible(first: dict, other: dict) -> bool:
    """Averaging needs one architecture and one basin: the same pretrained base and shape, the same seed (so the same
    data order) and text path."""
    a, b = first["metrics"]["args"], other["metrics"]["args"]
    return (pretrained_base(a["base_model"]) == pretrained_base(b["base_model"])
            and _architecture(first["dir"]) == _architecture(other["dir"])
            and all(a.get(k) == b.get(k) for k in ("seed", "preprocess", "max_length")))


def greedy_soup(runs: Sequence[Path] | Path, splits: Splits, output_dir: Path, device: str = "auto",
                eval_batch_size: int = 256) -> TransformerResult:
    """Average compatible runs greedily, and all of them uniformly; keep whichever scores higher on the selection
    score (emotion validation, plus held-out E-c train when the splits carry it), then score the test files once."""
    started = time.perf_counter()
    candidates = _candidates([runs] if isinstance(runs, Path) else list(runs))
    first = candidates[0]
    pool = [c for c in candidates if _compatible(first, c)]
    dev = resolve_device(device)
    bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    args = TransformerArgs(**{**first["metrics"]["args"], "output_dir": str(output_dir)})
    preprocess = make_preprocess(args.preprocess)
    tokenizer, model = _load(str(first["dir"] / "checkpoint"), splits.labels)
    model.to(dev)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    kw = dict(batch_size=eval_batch_size, device=dev, bf16=bf16, pad_id=pad_id)
    eval_ids = {name: (encode(tokenizer, [preprocess(e.text) for e in single_label(ex)], args.max_length),
                       splits.label_ids(single_label(ex)))
                for name, ex in {"val": splits.val, **splits.extra_val}.items()}

    states = {}
    for c in pool:
        _, m = _load(str(c["dir"] / "checkpoint"), splits.labels)
        states[c["name"]] = {k: v.detach().float().to(dev) for k, v in m.state_dict().items()}

    def average(names: Sequence[str]) -> dict[str, torch.Tensor]:
        return {k: sum(states[n][k] for n in names) / len(names) if v.is_floating_point() else v
                for k, v in states[names[0]].items()}

    def score(names: Sequence[str]) -> dict:
        model.load_state_dict(average(names))
        reports = {name: _evaluate(model, ids, y, splits.labels, **kw) for name, (ids, y) in eval_ids.items()}
        return {"key": (selection_score(reports), reports["val"]["accuracy"]), "reports": reports}

    best = score([first["name"]])
    members, history = [first["name"]], []
    history.append({"soup": "greedy", "member": first["name"], "accepted": True, "selection": best["key"][0]})
    for cand in pool[1:]:
        trial = score(members + [cand["name"]])
        accepted = trial["key"] >= best["key"]
        history.append({"soup": "greedy", "member": cand["name"], "accepted": accepted,
                        "selection": trial["key"][0]})
        log.info("greedy soup + %s: selection %.4f (%s)", cand["name"], trial["key"][0],
                 "kept" if accepted else "dropped")
        if accepted:
            members.append(cand["name"])
            best = trial
    if len(pool) > 2 and len(members) < len(pool):
        uniform = score([c["name"] for c in pool])
        kept = uniform["key"] > best["key"]
        history.append({"soup": "uniform", "members": [c["name"] for c in pool], "accepted": kept,
                        "selection": uniform["key"][0]})
        log.info("uniform soup of %d runs: selection %.4f (%s)", len(pool), uniform["key"][0],
                 "kept" if kept else "dropped")
        if kept:
            members, best = [c["name"] for c in pool], uniform
    model.load_state_dict(average(members))

    y_test = splits.label_ids(splits.test)
    test_report = _evaluate(model, encode(tokenizer, [preprocess(e.text) for e in splits.test], args.max_length),
                            y_test, splits.labels, **kw)
    raw = rawify_examples(splits.test, args.raw_test_seed)
    raw_report = _evaluate(model, encode(tokenizer, [preprocess(e.text) for e in raw], args.max_length),
                           y_test, splits.labels, **kw)
    train_time = sum(c["metrics"]["train_time_s"] for c in pool if c["name"] in members)
    best.update(report=best["reports"]["val"], epoch=first["metrics"]["best_epoch"],
                step=first["metrics"]["best_step"])
    model.cpu()
    result = _write(args, model, tokenizer, best, history, test_report, raw_report, first["metrics"]["epochs_run"],
                    train_time, device_name(dev), first["metrics"]["n_train"])
    m = json.loads(result.metrics_path.read_text())
    m.update(model="transformer-soup", soup_members=members, soup_history=history,
             soup_member_runs=[str(c["dir"]) for c in pool if c["name"] in members],
             soup_time_s=round(time.perf_counter() - started, 1),
             train_time_note="train_time_s sums the member runs")
    result.metrics_path.write_text(json.dumps(m, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--real-tweets-dir", default="auto",
                   help="SemEval-2018 E-c directory for the held-out real-tweet score (auto, none or a path)")
    p.add_argument("--runs", type=Path, nargs="+", required=True,
                   help="finished runs (each holding metrics.json and checkpoint/), or a sweep's output directory")
    p.add_argument("--output-dir", type=Path, default=Path("runs/soup"))
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    splits = load_splits(args.data_dir, real_tweets_dir=resolve_real_tweets_dir(args.real_tweets_dir, args.data_dir))
    result = greedy_soup(args.runs, splits, args.output_dir, args.device)
    metrics = json.loads(result.metrics_path.read_text())
    print(json.dumps({"members": metrics["soup_members"], "selection": metrics["selection"],
                      **{f"{k}_accuracy": v["accuracy"] for k, v in metrics.items() if k.startswith("ec_")},
                      "val_macro_f1": result.val["macro_f1"], "test_accuracy": result.test["accuracy"],
                      "test_macro_f1": result.test["macro_f1"], "raw_test_accuracy": result.test_raw["accuracy"],
                      "raw_test_macro_f1": result.test_raw["macro_f1"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
