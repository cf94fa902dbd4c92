"""Greedy model soup: average the weights of fine-tuned runs that share a base, kept only while validation improves.

Runs fine-tuned from the same pretrained encoder with the same seed sit in one basin, so their
averaged weights score like an ensemble at the cost of one model (Wortsman et al., 2022,
"Model soups"). Candidates are ranked and accepted on validation macro-F1 only; the test files
are scored once, at the end.

    python -m training.soup --data-dir DIR --runs runs/sweep --output-dir runs/soup
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from training.data import Splits, load_splits
from training.rawify import rawify_examples
from training.transformer import (TransformerArgs, TransformerResult, _evaluate, _load, _write,
                                  device_name, encode, make_preprocess, resolve_device)

log = logging.getLogger(__name__)


def _candidates(runs_dir: Path) -> list[dict]:
    """Finished runs under `runs_dir`, best validation macro-F1 first."""
    found = []
    for metrics_path in sorted(runs_dir.glob("*/metrics.json")):
        m = json.loads(metrics_path.read_text())
        found.append({"name": metrics_path.parent.name, "dir": metrics_path.parent, "metrics": m,
                      "key": (m["val"]["macro_f1"], m["val"]["accuracy"])})
    return sorted(found, key=lambda c: c["key"], reverse=True)


def _compatible(first: dict, other: dict) -> bool:
    a, b = first["metrics"]["args"], other["metrics"]["args"]
    return all(a[k] == b[k] for k in ("base_model", "seed", "preprocess", "max_length"))


def greedy_soup(runs_dir: Path, splits: Splits, output_dir: Path, device: str = "auto",
                eval_batch_size: int = 256) -> TransformerResult:
    """Average runs greedily on validation macro-F1, then score clean and raw test and write a checkpoint."""
    started = time.perf_counter()
    candidates = _candidates(runs_dir)
    if not candidates:
        raise RuntimeError(f"{runs_dir}: no finished runs (*/metrics.json) to average")
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
    val_ids = encode(tokenizer, [preprocess(e.text) for e in splits.val], args.max_length)
    y_val = splits.label_ids(splits.val)

    def load_state(c: dict) -> dict[str, torch.Tensor]:
        _, m = _load(str(c["dir"] / "checkpoint"), splits.labels)
        return {k: v.detach().float().to(dev) for k, v in m.state_dict().items()}

    total = load_state(first)
    members, history = [first["name"]], []
    best_report = _evaluate(model, val_ids, y_val, splits.labels, **kw)
    history.append({"member": first["name"], "accepted": True, "val": best_report["macro_f1"]})
    for cand in pool[1:]:
        state = load_state(cand)
        trial = {k: (total[k] + state[k]) / (len(members) + 1) if total[k].is_floating_point() else total[k]
                 for k in total}
        model.load_state_dict(trial)
        report = _evaluate(model, val_ids, y_val, splits.labels, **kw)
        accepted = (report["macro_f1"], report["accuracy"]) >= (best_report["macro_f1"], best_report["accuracy"])
        history.append({"member": cand["name"], "accepted": accepted, "val": report["macro_f1"]})
        log.info("soup + %s: val macro-F1 %.4f (%s)", cand["name"], report["macro_f1"], "kept" if accepted else "dropped")
        if accepted:
            total = {k: total[k] + state[k] if total[k].is_floating_point() else total[k] for k in total}
            members.append(cand["name"])
            best_report = report
    model.load_state_dict({k: v / len(members) if v.is_floating_point() else v for k, v in total.items()})

    y_test = splits.label_ids(splits.test)
    test_report = _evaluate(model, encode(tokenizer, [preprocess(e.text) for e in splits.test], args.max_length),
                            y_test, splits.labels, **kw)
    raw = rawify_examples(splits.test, args.raw_test_seed)
    raw_report = _evaluate(model, encode(tokenizer, [preprocess(e.text) for e in raw], args.max_length),
                           y_test, splits.labels, **kw)
    train_time = sum(c["metrics"]["train_time_s"] for c in pool if c["name"] in members)
    best = {"report": best_report, "epoch": first["metrics"]["best_epoch"], "step": first["metrics"]["best_step"]}
    model.cpu()
    result = _write(args, model, tokenizer, best, history, test_report, raw_report, first["metrics"]["epochs_run"],
                    train_time, device_name(dev), first["metrics"]["n_train"])
    m = json.loads(result.metrics_path.read_text())
    m.update(model="transformer-soup", soup_members=members, soup_history=history,
             soup_time_s=round(time.perf_counter() - started, 1),
             train_time_note="train_time_s sums the member runs (they ran side by side on one device)")
    result.metrics_path.write_text(json.dumps(m, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", type=Path, required=True, help="a sweep's output directory")
    p.add_argument("--output-dir", type=Path, default=Path("runs/soup"))
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    result = greedy_soup(args.runs, load_splits(args.data_dir), args.output_dir, args.device)
    print(json.dumps({"members": json.loads(result.metrics_path.read_text())["soup_members"],
                      "val_macro_f1": result.val["macro_f1"], "test_accuracy": result.test["accuracy"],
                      "test_macro_f1": result.test["macro_f1"], "raw_test_accuracy": result.test_raw["accuracy"],
                      "raw_test_macro_f1": result.test_raw["macro_f1"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
