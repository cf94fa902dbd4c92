"""Model soup: average the weights of fine-tuned runs that share a base, kept while the selection score does not drop.

Runs fine-tuned from the same pretrained encoder tend to sit in one basin, so their averaged weights score like an
ensemble at the cost of one model (Wortsman et al., 2022, "Model soups"). Runs from other seeds are averaged too
(their classifier heads start apart; the shipped soup holds one), and whether a run helps is left to the score. The
greedy soup adds runs best-first while the score the runs were selected on (emotion validation macro-F1, averaged with
held-out E-c train accuracy when real tweets are in the data) does not drop; the uniform soup of every compatible run
is scored too, and the better of the two is kept. Never test data, never E-c dev: the test files are scored once, at
the end.

    python -m training.soup --runs runs/student-a runs/student-b runs/student-c --output-dir runs/soup
    python -m training.soup --runs runs/sweep --output-dir runs/soup    # every finished run of a sweep
    python -m training.soup --runs runs/all/members/m*-qat --served int8-static-fused   # chosen as served (training all)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Sequence

import torch

from training.data import Splits, load_splits, resolve_real_tweets_dir, single_label
from training.rawify import rawify_examples
from training.transformer import (TransformerArgs, TransformerResult, _evaluate, _load, _write,
                                  device_name, encode, make_preprocess, resolve_device, save_checkpoint,
                                  selection_score)

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
    """Averaging needs one architecture and one starting point: the same pretrained base and shape, and one text path.
    The seed is not a condition: the same base already puts runs in one basin, and a run from another seed joins the
    soup only if the score does not drop (docs/training.md, "A fourth member with its own seed"). A pass that
    continues another run was already averaged this way, since it carries its own seed, whatever its parent's was."""
    a, b = first["metrics"]["args"], other["metrics"]["args"]
    return (pretrained_base(a["base_model"]) == pretrained_base(b["base_model"])
            and _architecture(first["dir"]) == _architecture(other["dir"])
            and all(a.get(k) == b.get(k) for k in ("preprocess", "max_length")))


class _Pool:
    """The compatible runs of a soup, loaded once: their weights, one model to load averages into, and the held-out
    sets the float selection score reads."""

    def __init__(self, runs: Sequence[Path] | Path, splits: Splits, output_dir: Path, device: str,
                 eval_batch_size: int):
        candidates = _candidates([runs] if isinstance(runs, Path) else list(runs))
        self.splits, self.first = splits, candidates[0]
        self.runs = [c for c in candidates if _compatible(self.first, c)]
        self.device = resolve_device(device)
        bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.args = TransformerArgs(**{**self.first["metrics"]["args"], "output_dir": str(output_dir)})
        self.preprocess = make_preprocess(self.args.preprocess)
        self.tokenizer, self.model = _load(str(self.first["dir"] / "checkpoint"), splits.labels)
        self.model.to(self.device)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.kw = dict(batch_size=eval_batch_size, device=self.device, bf16=bf16, pad_id=pad_id)
        self.eval_ids = {name: (self.encode(single_label(ex)), splits.label_ids(single_label(ex)))
                         for name, ex in {"val": splits.val, **splits.extra_val}.items()}
        self.states = {}
        for c in self.runs:
            _, m = _load(str(c["dir"] / "checkpoint"), splits.labels)
            self.states[c["name"]] = {k: v.detach().float().to(self.device) for k, v in m.state_dict().items()}

    def encode(self, examples) -> list:
        return encode(self.tokenizer, [self.preprocess(e.text) for e in examples], self.args.max_length)

    def load(self, names: Sequence[str]) -> None:
        """Put the average of `names`' weights into the model."""
        self.model.load_state_dict({k: sum(self.states[n][k] for n in names) / len(names) if v.is_floating_point()
                                    else v for k, v in self.states[names[0]].items()})

    def float_score(self, names: Sequence[str]) -> dict:
        """The selection score of the soup of `names` in float (PyTorch), with every held-out report."""
        self.load(names)
        reports = {name: _evaluate(self.model, ids, y, self.splits.labels, **self.kw)
                   for name, (ids, y) in self.eval_ids.items()}
        return {"key": (selection_score(reports), reports["val"]["accuracy"]), "reports": reports}

    def finish(self, members: Sequence[str], best: dict, history: list[dict], started: float) -> TransformerResult:
        """Write the soup of `members` as a run (checkpoint, metrics.json), scoring the test files once."""
        self.load(members)
        splits, kw = self.splits, self.kw
        y_test = splits.label_ids(splits.test)
        test_report = _evaluate(self.model, self.encode(splits.test), y_test, splits.labels, **kw)
        raw_report = _evaluate(self.model, self.encode(rawify_examples(splits.test, self.args.raw_test_seed)), y_test,
                               splits.labels, **kw)
        first = self.first["metrics"]
        train_time = sum(c["metrics"]["train_time_s"] for c in self.runs if c["name"] in members)
        best = {**best, "report": best["reports"]["val"], "epoch": first["best_epoch"], "step": first["best_step"]}
        self.model.cpu()
        result = _write(self.args, self.model, self.tokenizer, best, history, test_report, raw_report,
                        first["epochs_run"], train_time, device_name(self.device), first["n_train"])
        m = json.loads(result.metrics_path.read_text())
        m.update(model="transformer-soup", soup_members=list(members), soup_history=history,
                 soup_member_runs=[str(c["dir"]) for c in self.runs if c["name"] in members],
                 soup_time_s=round(time.perf_counter() - started, 1),
                 train_time_note="train_time_s sums the member runs")
        if "served" in best:
            m["served_selection"] = best["served"]
        result.metrics_path.write_text(json.dumps(m, indent=2) + "\n")
        return result


def greedy_soup(runs: Sequence[Path] | Path, splits: Splits, output_dir: Path, device: str = "auto",
                eval_batch_size: int = 256) -> TransformerResult:
    """Average compatible runs greedily, and all of them uniformly; keep whichever scores higher on the selection
    score (emotion validation, plus held-out E-c train when the splits carry it), then score the test files once."""
    started = time.perf_counter()
    pool = _Pool(runs, splits, output_dir, device, eval_batch_size)
    first = pool.runs[0]["name"]
    best = pool.float_score([first])
    members, history = [first], [{"soup": "greedy", "member": first, "accepted": True, "selection": best["key"][0]}]
    for cand in pool.runs[1:]:
        trial = pool.float_score(members + [cand["name"]])
        accepted = trial["key"] >= best["key"]
        history.append({"soup": "greedy", "member": cand["name"], "accepted": accepted,
                        "selection": trial["key"][0]})
        log.info("greedy soup + %s: selection %.4f (%s)", cand["name"], trial["key"][0],
                 "kept" if accepted else "dropped")
        if accepted:
            members.append(cand["name"])
            best = trial
    everyone = [c["name"] for c in pool.runs]
    if len(everyone) > 2 and len(members) < len(everyone):
        uniform = pool.float_score(everyone)
        kept = uniform["key"] > best["key"]
        history.append({"soup": "uniform", "members": everyone, "accepted": kept, "selection": uniform["key"][0]})
        log.info("uniform soup of %d runs: selection %.4f (%s)", len(everyone), uniform["key"][0],
                 "kept" if kept else "dropped")
        if kept:
            members, best = everyone, uniform
    return pool.finish(members, best, history, started)


def served_greedy_soup(runs: Sequence[Path] | Path, splits: Splits, output_dir: Path, quantization: str, name: str,
                       device: str = "auto", eval_batch_size: int = 256) -> TransformerResult:
    """The greedy soup chosen on the model as it will be served, not on the float weights.

    Every soup tried (each run alone first) is exported to its `quantization` serving directory, put through the
    parity gate that shipping applies, and scored on the held-out sets through `tweetmood.Classifier`. Runs are
    ranked by their own served score, the ones the gate refuses after the ones it passes; a run joins while the soup
    with it passes the gate (or none so far has) and its served score does not drop; the uniform soup of all is tried
    last. Averages that take in a run trained from another seed came out of training less confident than their
    runs, and their int8 graph can fail the gate that the float pick never sees (docs/training.md, "A fourth member
    with its own seed, and a soup chosen as served")."""
    from training.export import CALIBRATION_TEXTS, check_parity, export_serving_model
    from training.report import served_report
    from tweetmood.classifier import Classifier

    started = time.perf_counter()
    pool = _Pool(runs, splits, output_dir, device, eval_batch_size)
    held_out = {"val": splits.val}
    if "ec-val" in splits.extra_val:
        held_out["ec-val"] = single_label(splits.extra_val["ec-val"])
    calibration = [e.text for e in splits.train[:CALIBRATION_TEXTS]]
    test_texts, test_labels = [e.text for e in splits.test], [e.label for e in splits.test]

    def served(names: Sequence[str]) -> dict:
        trial = Path(output_dir) / "trials" / "+".join(names)
        pool.load(names)
        checkpoint = save_checkpoint(pool.args, pool.model, pool.tokenizer, trial / "checkpoint")
        serving = export_serving_model(checkpoint, trial / "export", trial / "serving", splits.labels,
                                       pool.args.max_length, name, quantization, calibration)
        parity = check_parity(checkpoint, serving, test_texts, test_labels, raise_on_failure=False)
        classifier = Classifier.from_dir(serving)
        reports = {set_name: served_report(classifier, examples) for set_name, examples in held_out.items()}
        shutil.rmtree(trial / "checkpoint")
        shutil.rmtree(trial / "export")
        selection = selection_score(reports)
        log.info("served soup %s: selection %.4f, gate %s (agreement %.2f%%)", "+".join(names), selection,
                 "passed" if parity.passed else "refused", 100 * parity.agreement)
        return {"rank": (parity.passed, selection, reports["val"]["accuracy"]), "selection": selection,
                "passed": parity.passed, "agreement": parity.agreement}

    alone = {c["name"]: served([c["name"]]) for c in pool.runs}
    order = sorted(alone, key=lambda n: alone[n]["rank"], reverse=True)
    members, best = [order[0]], alone[order[0]]
    history = [{"soup": "served greedy", "member": n, "alone": alone[n]} for n in order]
    history[0]["accepted"] = True
    for entry in history[1:]:
        trial = served(members + [entry["member"]])
        entry.update(trial=trial, accepted=trial["rank"] >= best["rank"])
        if entry["accepted"]:
            members.append(entry["member"])
            best = trial
    if len(order) > 2 and len(members) < len(order):
        uniform = served(order)
        kept = uniform["rank"] > best["rank"]
        history.append({"soup": "served uniform", "members": order, "trial": uniform, "accepted": kept})
        if kept:
            members, best = order, uniform
    if not best["passed"]:
        log.warning("no soup of %s passed the parity gate; the export will refuse %s", order, "+".join(members))
    return pool.finish(members, {**pool.float_score(members), "served": best}, history, started)


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
    p.add_argument("--served", metavar="QUANTIZATION", default=None,
                   help="choose the soup as it will be served: each soup tried is exported with this quantization "
                        "(e.g. int8-static-fused), put through the parity gate and scored through the serving "
                        "classifier (what `training all` does); default: choose on the float weights")
    p.add_argument("--name", default="tweetmood-minilm-l6", help="model name of the served soups tried")
    args = p.parse_args(argv)
    splits = load_splits(args.data_dir, real_tweets_dir=resolve_real_tweets_dir(args.real_tweets_dir, args.data_dir))
    if args.served:
        result = served_greedy_soup(args.runs, splits, args.output_dir, args.served, args.name, args.device)
    else:
        result = greedy_soup(args.runs, splits, args.output_dir, args.device)
    metrics = json.loads(result.metrics_path.read_text())
    served = {"served_selection": metrics["served_selection"]["selection"]} if "served_selection" in metrics else {}
    print(json.dumps({"members": metrics["soup_members"], "selection": metrics["selection"], **served,
                      **{f"{k}_accuracy": v["accuracy"] for k, v in metrics.items() if k.startswith("ec_")},
                      "val_macro_f1": result.val["macro_f1"], "test_accuracy": result.test["accuracy"],
                      "test_macro_f1": result.test["macro_f1"], "raw_test_accuracy": result.test_raw["accuracy"],
                      "raw_test_macro_f1": result.test_raw["macro_f1"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
