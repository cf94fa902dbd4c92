"""`make bench-report`: `tweetmood report` on a 1,000,000-row result file on one core, against a plain Python script."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- report-bench: written by make bench-report -->", "<!-- /report-bench -->"
LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")
BUDGET_S, BUDGET_MB = 10.0, 500.0


def write_result_file(path: Path, rows: int, seed: int = 0) -> dict:
    """`rows` result rows through the real JSONL writer (5% error rows), with their manifest; returns the manifest."""
    from tweetmood.manifest import OutputManifest
    from tweetmood.records import EMPTY_TEXT, Record, Rejected
    from tweetmood.writers import JsonlWriter

    sample = [
        line.strip()
        for p in sorted((REPO / "samples").rglob("*.txt"))
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip()
    ] or ["what a day"]
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(len(LABELS), 0.4), size=rows)
    rejected = rng.random(rows) < 0.05
    manifest = OutputManifest(source_key=f"bench/{rows}.txt", output_key=path.name, rows_read=rows)
    with open(path, "wb") as sink:
        writer = JsonlWriter(sink, LABELS, "bench-model")
        for i in range(rows):
            if rejected[i]:
                writer.write(Rejected(i + 1, EMPTY_TEXT, f"line {i + 1} of bench/{rows}.txt has no text"), None)
                manifest.error_counts[EMPTY_TEXT] = manifest.error_counts.get(EMPTY_TEXT, 0) + 1
            else:
                label = writer.write(Record(i + 1, f"{sample[i % len(sample)]} #{i}", str(i)), probs[i])
                manifest.label_counts[label] = manifest.label_counts.get(label, 0) + 1
        writer.close()
    manifest.rows_rejected = int(rejected.sum())
    manifest.rows_scored = rows - manifest.rows_rejected
    Path(f"{path}.manifest.json").write_bytes(manifest.to_json())
    return manifest.to_dict()


def _child_report(path: str) -> dict:
    """The report's own path: DuckDB on one thread, every summary query, the text."""
    from tweetmood_cli.report import REPORT_COLUMNS, find_local, open_database, render_text, summarise

    started = time.perf_counter()
    summary = summarise(open_database(find_local(Path(path)), columns=REPORT_COLUMNS, threads=1), path)
    text = render_text(summary)
    return {"seconds": time.perf_counter() - started, "totals": summary.totals, "match": summary.counts_match, "chars": len(text)}


def _child_script(path: str) -> dict:
    """What a user writes without the report: orjson per line, counters for labels and errors, a mean score."""
    from collections import Counter

    import orjson

    started = time.perf_counter()
    labels, errors, total = Counter(), Counter(), 0.0
    with open(path, "rb") as f:
        for line in f:
            row = orjson.loads(line)
            if "label" in row:
                labels[row["label"]] += 1
                total += row["score"]
            else:
                errors[row["error"]] += 1
    return {"seconds": time.perf_counter() - started, "rows_scored": sum(labels.values()), "rows_rejected": sum(errors.values())}


def measure(kind: str, path: Path, core: int) -> dict:
    """Run one child pinned to `core`; its own wall time, its peak RSS from wait4."""
    cmd = [sys.executable, "-m", "benchmarks.report_bench", "--child", kind, str(path)]
    started = time.perf_counter()
    proc = subprocess.Popen(["taskset", "-c", str(core), *cmd], stdout=subprocess.PIPE, cwd=REPO)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{kind} child failed with exit code {proc.returncode}")
    result = json.loads(out)
    result.update(process_s=time.perf_counter() - started, peak_rss_mb=usage.ru_maxrss / 1024)
    return result


def cpu_line() -> str:
    from benchmarks.run import cpu_info

    info = cpu_info()
    return f"{info.get('cpu', platform.processor())}, flags {', '.join(info.get('flags', [])) or 'none of note'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "report-bench")
    parser.add_argument("--core", type=int, default=0, help="the one CPU the children are pinned to")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if args.child:
        kind, path = args.child
        print(json.dumps(_child_report(path) if kind == "report" else _child_script(path), default=str))
        return 0

    args.work_dir.mkdir(parents=True, exist_ok=True)
    path = args.work_dir / f"results-{args.rows}.jsonl"
    if not Path(f"{path}.manifest.json").is_file():
        print(f"writing {args.rows:,} result rows to {path} …", file=sys.stderr)
        write_result_file(path, args.rows)
    manifest = json.loads(Path(f"{path}.manifest.json").read_text())
    report = measure("report", path, args.core)
    script = measure("script", path, args.core)
    totals = report["totals"]
    assert report["match"] and totals["rows_read"] == manifest["rows_read"], "the report disagrees with the manifest"
    assert script["rows_scored"] == totals["rows_scored"] and script["rows_rejected"] == totals["rows_rejected"]
    size_mb = path.stat().st_size / 1e6
    ok = report["process_s"] < BUDGET_S and report["peak_rss_mb"] < BUDGET_MB
    section = "\n".join([
        BEGIN,
        "## `tweetmood report` on a 1,000,000-row result file",
        "",
        f"Measured by `make bench-report` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {cpu_line()}; "
        f"each run a fresh process pinned to one core (`taskset -c {args.core}`), DuckDB with one thread; "
        f"Python {platform.python_version()}.",
        f"The file: {args.rows:,} rows written by the JSONL writer ({size_mb:,.0f} MB, 5% error rows); "
        f"the report's counts equal its manifest's.",
        "",
        "| | seconds (whole process) | of which the work | peak RSS MB |",
        "|---|---|---|---|",
        f"| `tweetmood report` (every summary query, text) | {report['process_s']:.2f} | {report['seconds']:.2f} | {report['peak_rss_mb']:.0f} |",
        f"| a plain Python script (orjson per line, counters) | {script['process_s']:.2f} | {script['seconds']:.2f} | {script['peak_rss_mb']:.0f} |",
        "",
        f"The report takes {report['process_s'] / script['process_s']:.2f}× the plain script's time and answers every "
        f"summary query, not one; budget {BUDGET_S:.0f} s and {BUDGET_MB:.0f} MB: {'met' if ok else 'NOT met'}.",
        END,
    ])
    print(section)
    if not args.no_doc:
        text = DOC.read_text(encoding="utf-8")
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        DOC.write_text(text, encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
