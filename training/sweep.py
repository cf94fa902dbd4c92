"""Run several fine-tuning configurations side by side (one GPU holds many MiniLM runs) and pick the best.

The best run is chosen on validation macro-F1 only; the test file never takes part in the choice.

    python -m training.sweep --data-dir DIR --output-dir runs/sweep --configs training/sweep_configs.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _flags(config: dict) -> list[str]:
    flags = []
    for key, value in config.items():
        if key != "name":
            flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


def run_sweep(configs: list[dict], data_dir: str, output_dir: Path, parallel: int, common: list[str],
              deadline_s: float | None = None) -> dict:
    """Launch `python -m training.transformer` per config, `parallel` at a time; returns the summary.

    Past `deadline_s` the runs still going are stopped and reported as such, so a time-boxed
    machine still hands back the runs that finished.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    pending, running, finished = list(configs), {}, []
    start = time.time()
    while pending or running:
        while pending and len(running) < parallel:
            config = pending.pop(0)
            run_dir = output_dir / config["name"]
            cmd = [sys.executable, "-m", "training.transformer", "--data-dir", data_dir, "--output-dir", str(run_dir),
                   "--progress", "false", *common, *_flags(config)]
            log = open(output_dir / f"{config['name']}.log", "w")
            running[config["name"]] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), config, log)
            print(f"[{time.time() - start:6.0f}s] started {config['name']}: {' '.join(_flags(config))}", flush=True)
        if deadline_s is not None and time.time() - start > deadline_s:
            for proc, _, _ in running.values():
                proc.terminate()
            pending.clear()
        for name, (proc, config, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            entry = {"name": name, "config": config, "returncode": proc.returncode}
            metrics_path = output_dir / name / "metrics.json"
            if proc.returncode == 0 and metrics_path.is_file():
                m = json.loads(metrics_path.read_text())
                entry.update(val_macro_f1=m["val"]["macro_f1"], val_accuracy=m["val"]["accuracy"],
                             test_accuracy=m["test"]["accuracy"], test_macro_f1=m["test"]["macro_f1"],
                             raw_test_accuracy=m["test_raw"]["accuracy"], raw_test_macro_f1=m["test_raw"]["macro_f1"],
                             best_epoch=m["best_epoch"], epochs_run=m["epochs_run"], train_time_s=m["train_time_s"],
                             device=m["device"])
            else:
                entry["log_tail"] = (output_dir / f"{name}.log").read_text()[-2000:]
            finished.append(entry)
            print(f"[{time.time() - start:6.0f}s] finished {json.dumps(entry)}", flush=True)
        time.sleep(2)
    ok = [e for e in finished if "val_macro_f1" in e]
    best = max(ok, key=lambda e: (e["val_macro_f1"], e["val_accuracy"])) if ok else None
    summary = {"runs": finished, "best": best["name"] if best else None, "wall_s": round(time.time() - start, 1)}
    (output_dir / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.sweep", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--output-dir", type=Path, default=Path("runs/sweep"))
    p.add_argument("--configs", type=Path, default=Path(__file__).with_name("sweep_configs.json"))
    p.add_argument("--parallel", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)))
    p.add_argument("--deadline-s", type=float, default=None, help="stop runs still going after this many seconds")
    args, common = p.parse_known_args(argv)
    configs = json.loads(args.configs.read_text())
    summary = run_sweep(configs, args.data_dir, args.output_dir, args.parallel, common, args.deadline_s)
    print(json.dumps({"best": summary["best"], "wall_s": summary["wall_s"]}))
    return 0 if summary["best"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
