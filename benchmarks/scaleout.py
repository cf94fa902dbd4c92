"""Scale-out figures: plan pass and merge per GB, one chunk's throughput at one vCPU, `tweetmood score --workers`
against one worker, and from those the wall time and cost of a 10,000,000-line file and of 10,000 small files.

Run alone with `python -m benchmarks.scaleout` (rewrites the scale-out section of docs/benchmarks.md) or as part
of `make bench`. Absolute numbers drift on shared machines: each run records the load average it ran under.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "layers" / "model" / "model"
TEMPLATE = ROOT / "template.yaml"
SCORE_FILE_ASL = ROOT / "statemachine" / "score_file.asl.json"
BACKLOG_ASL = ROOT / "statemachine" / "backlog.asl.json"
# List prices, us-east-1, 2026.
LAMBDA_GB_S = 0.0000166667
LAMBDA_PER_REQUEST = 0.20 / 1e6
SFN_PER_TRANSITION = 0.025 / 1000
BEGIN, END = "<!-- scale-out: begin (benchmarks/scaleout.py) -->", "<!-- scale-out: end -->"


# --- what the deployment is ---------------------------------------------------------


def template_defaults(path: Path = TEMPLATE) -> dict:
    """The template parameters the projection depends on, at their defaults."""
    from samtranslator.yaml_helper import yaml_parse

    params = yaml_parse(path.read_text())["Parameters"]
    want = {"MemorySize": 1769, "ChunkRows": 50_000, "MapMaxConcurrency": 250, "ReservedConcurrency": 10,
            "InlineMaxBytes": 8 << 20}
    return {k: int(params.get(k, {}).get("Default", v)) for k, v in want.items()}


def states_on_success_path(states: dict, start: str) -> list[str]:
    """The states an execution enters when nothing fails: each is one billed state transition."""
    path, name = [], start
    while name:
        path.append(name)
        state = states[name]
        name = None if state.get("End") or state["Type"] in ("Succeed", "Fail") else state.get("Next")
    return path


def transitions(asl_path: Path) -> tuple[int, int]:
    """(transitions of the parent, transitions of one Map child) on the success path of a definition."""
    asl = json.loads(asl_path.read_text())
    parent = states_on_success_path(asl["States"], asl["StartAt"])
    maps = [asl["States"][s] for s in parent if asl["States"][s]["Type"] == "Map"]
    child = 0
    for m in maps:
        proc = m.get("ItemProcessor") or m.get("Iterator")
        child += len(states_on_success_path(proc["States"], proc["StartAt"]))
    return len(parent), child


# --- measurements -------------------------------------------------------------------


def _generate(path: Path, texts: list[str], lines: int) -> dict:
    from benchmarks.run import raw_million_file

    return raw_million_file(path, texts, lines)


def plan_merge_and_chunk(model_dir: Path, texts: list[str], workdir: Path, lines: int, chunk_rows: int) -> dict:
    """Plan a generated file, score its first chunk with one onnxruntime thread (a 1-vCPU Lambda), concatenate
    copies of that part into a result as big as the whole file's; seconds per GB and tweets/s."""
    from tweetmood import scaleout
    from tweetmood.classifier import Classifier
    from tweetmood.settings import Settings
    from tweetmood.storage import LocalStorage

    src = workdir / "plan.txt"
    info = _generate(src, texts, lines)
    settings = Settings(chunk_rows=chunk_rows, model_dir=str(model_dir))
    storage = LocalStorage()
    run = scaleout.local_run(str(src), str(workdir / "plan.out.jsonl"), str(workdir / "staging"))
    # CPU seconds, not wall: on a shared machine the wall clock measures the neighbours.
    t = time.process_time()
    run = scaleout.plan(storage, settings, run)
    plan_s = time.process_time() - t
    items = scaleout.read_plan(storage, run)
    t = time.process_time()
    classifier = Classifier.from_dir(model_dir, threads=1)
    load_s = time.process_time() - t
    t, wall = time.process_time(), time.perf_counter()
    counts = scaleout.score_chunk(storage, classifier, settings, items[0])
    chunk_s, chunk_wall = time.process_time() - t, time.perf_counter() - wall
    part = Path(run["staging"]) / "parts" / f"{0:06d}"
    part_bytes = part.stat().st_size
    copies = max(1, math.ceil(info["bytes"] * part_bytes / (items[0]["end"] - items[0]["start"]) / part_bytes))
    t = time.perf_counter()
    storage.concatenate("", [str(part)] * copies, str(workdir / "merged.jsonl"), "application/x-ndjson")
    merge_s = time.perf_counter() - t
    merged_bytes = (workdir / "merged.jsonl").stat().st_size
    (workdir / "merged.jsonl").unlink()
    shutil.rmtree(workdir / "staging", ignore_errors=True)
    src.unlink()
    return {
        "plan_lines": lines, "plan_bytes": info["bytes"], "plan_s": round(plan_s, 2),
        "plan_s_per_gb": round(plan_s / (info["bytes"] / 1e9), 1), "chunks_planned": len(items),
        "bytes_per_line": round(info["bytes"] / lines, 1),
        "chunk_rows": counts["rows"], "chunk_scored": counts["scored"], "chunk_s": round(chunk_s, 2),
        "chunk_wall_s": round(chunk_wall, 2),
        "chunk_tweets_per_s": round(counts["scored"] / chunk_s, 1), "model_load_s": round(load_s, 2),
        "result_bytes_per_row": round(part_bytes / counts["rows"], 1),
        "merge_bytes": merged_bytes, "merge_s": round(merge_s, 2),
        "merge_s_per_gb": round(merge_s / (merged_bytes / 1e9), 2),
    }


def _tweetmood(args: list[str]) -> tuple[float, float]:
    """Run the installed `tweetmood` CLI; (wall seconds, CPU seconds of it and its workers)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tweetmood_cli.cli", *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"tweetmood {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


VARIANTS = (("1 worker, 1 thread", 1, 1), ("1 worker, 2 threads", 1, 2), ("2 workers, 1 thread each", 2, 1))


def workers_runs(model_dir: Path, texts: list[str], workdir: Path, lines: int, files: int,
                 file_lines: int | None = None) -> dict:
    """`tweetmood score` on one file of `lines` lines and on a folder of `files` files of `file_lines` lines each
    (default: as many lines in all as the one file), once per variant; outputs compared byte for byte."""
    file_lines = file_lines or max(1, lines // files)
    big = workdir / "one" / "tweets.txt"
    big.parent.mkdir(parents=True)
    _generate(big, texts, lines)
    folder = workdir / "folder"
    folder.mkdir()
    for i in range(files):
        _generate(folder / f"f{i:03d}.txt", texts[i % len(texts):] + texts[: i % len(texts)], file_lines)
    out: dict = {"lines": lines, "files": files, "file_lines": file_lines, "runs": []}
    for target, name in ((big, "one file"), (folder, "folder")):
        reference = None
        for label, workers, threads in VARIANTS:
            dest = workdir / f"out-{name.replace(' ', '-')}-{workers}-{threads}"
            args = ["score", str(target), "--model", str(model_dir), "--workers", str(workers), "--threads",
                    str(threads), "--quiet", "--output", str(dest / "result.jsonl" if target == big else dest)]
            load = os.getloadavg()[0]
            wall, cpu = _tweetmood(args)
            results = sorted(p for p in dest.rglob("*") if p.is_file() and not p.name.endswith(".manifest.json"))
            digest = b"".join(p.read_bytes() for p in results)
            same = reference is None or digest == reference
            reference = reference if reference is not None else digest
            rows = lines if target == big else files * file_lines
            out["runs"].append({"input": name, "variant": label, "workers": workers, "threads": threads,
                                "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "tweets_per_s": round(rows / wall, 1),
                                "load_avg_1min": round(load, 1), "output_identical_to_first": same})
            shutil.rmtree(dest)
    return out


# --- projection ---------------------------------------------------------------------


def project(m: dict, tmpl: dict, file_transitions: tuple[int, int], backlog_transitions: tuple[int, int],
            lines: int = 10_000_000, small_files: int = 10_000, small_lines: int = 1_000) -> dict:
    """Wall time and cost of one file of `lines` lines (plan, chunks on the Distributed Map, merge) and of
    `small_files` files of `small_lines` lines (the backlog machine, each file scored inline), at the template's
    defaults and this run's measured rates. Planning and merging run on one 1-vCPU Lambda at the local rate."""
    gb_mem = tmpl["MemorySize"] / 1024
    vcpu = min(tmpl["MemorySize"] / 1769, 1.0)
    tps = m["chunk_tweets_per_s"] * vcpu
    in_gb = lines * m["bytes_per_line"] / 1e9
    out_gb = lines * m["result_bytes_per_row"] / 1e9
    chunks = math.ceil(lines / tmpl["ChunkRows"])
    chunk_s = tmpl["ChunkRows"] / tps + m["model_load_s"]
    plan_s, merge_s = m["plan_s_per_gb"] * in_gb / vcpu, m["merge_s_per_gb"] * out_gb / vcpu
    waves = math.ceil(chunks / tmpl["MapMaxConcurrency"])
    wall = plan_s + waves * chunk_s + merge_s
    lambda_s = plan_s + chunks * chunk_s + merge_s
    parent, child = file_transitions
    n_transitions = parent + chunks * child
    usd_lambda = lambda_s * gb_mem * LAMBDA_GB_S + (chunks + 2) * LAMBDA_PER_REQUEST
    usd_sfn = n_transitions * SFN_PER_TRANSITION
    big = {"lines": lines, "input_gb": round(in_gb, 2), "chunks": chunks, "chunk_s": round(chunk_s, 1),
           "waves": waves, "plan_s": round(plan_s, 1), "merge_s": round(merge_s, 1), "wall_s": round(wall, 1),
           "lambda_usd": round(usd_lambda, 4), "transitions": n_transitions, "stepfunctions_usd": round(usd_sfn, 4),
           "usd_per_million": round((usd_lambda + usd_sfn) / (lines / 1e6), 4)}
    per_file_s = small_lines / tps
    b_parent, b_child = backlog_transitions
    total_lines = small_files * small_lines
    usd_lambda = small_files * per_file_s * gb_mem * LAMBDA_GB_S + small_files * LAMBDA_PER_REQUEST
    usd_sfn = (b_parent + small_files * b_child) * SFN_PER_TRANSITION
    small = {"files": small_files, "lines_each": small_lines, "concurrency": tmpl["ReservedConcurrency"],
             "per_file_s": round(per_file_s, 2),
             "wall_s": round(math.ceil(small_files / tmpl["ReservedConcurrency"]) * per_file_s, 1),
             "lambda_usd": round(usd_lambda, 4), "transitions": b_parent + small_files * b_child,
             "stepfunctions_usd": round(usd_sfn, 4),
             "usd_per_million": round((usd_lambda + usd_sfn) / (total_lines / 1e6), 4)}
    return {"big_file": big, "small_files": small}


# --- report -------------------------------------------------------------------------


def render(r: dict) -> str:
    """The scale-out section of docs/benchmarks.md."""
    m, t, p = r["measured"], r["template"], r["projection"]
    lines = [BEGIN, "## Scale-out: plan, chunks, merge", "",
             f"Measured by `{r['command']}` on {r['date']} on {r['cpu']} (load average {r['load_avg_1min']} at the start: "
             "a shared machine, so read the ratios, not the absolutes).", "",
             "Plan and chunk figures are CPU seconds of this process (one thread), which is what a dedicated vCPU "
             "gives; the wall clock on this machine measured the neighbours as well.", "",
             f"- Plan pass (the serial reader over every row, cutting chunks): {m['plan_s']} s for {m['plan_lines']:,} lines "
             f"({m['plan_bytes'] / 1e6:.0f} MB) = **{m['plan_s_per_gb']} s per GB** on one core.",
             f"- One chunk ({m['chunk_rows']:,} rows) scored by `score_chunk` with one onnxruntime thread (what a 1,769 MB, "
             f"1-vCPU Lambda gets): {m['chunk_s']} CPU s ({m['chunk_wall_s']} s wall) = **{m['chunk_tweets_per_s']} tweets/s per "
             f"chunk**; the model loads in "
             f"{m['model_load_s']} s; a result row is {m['result_bytes_per_row']} bytes for an input line of {m['bytes_per_line']}.",
             f"- Merge by streamed concatenation (local files; on S3 parts of 5 MiB or more are joined by "
             f"UploadPartCopy inside S3 instead): {m['merge_s']} s for {m['merge_bytes'] / 1e6:.0f} MB = "
             f"**{m['merge_s_per_gb']} s per GB**.", ""]
    if r.get("workers"):
        w = r["workers"]
        lines += [f"`tweetmood score` on one file of {w['lines']:,} lines and on a folder of {w['files']} files of "
                  f"{w['file_lines']:,} lines (one run each; CPU s counts the CLI and its workers):", "",
                  "| Input | Variant | Wall s | tweets/s | CPU s | Load avg | Output = 1 worker |", "|---|---|---|---|---|---|---|"]
        for run in w["runs"]:
            lines.append(f"| {run['input']} | {run['variant']} | {run['wall_s']} | {run['tweets_per_s']} | {run['cpu_s']} | "
                         f"{run['load_avg_1min']} | {'yes' if run['output_identical_to_first'] else 'NO'} |")
        for name in ("one file", "folder"):
            runs = {x["variant"]: x for x in w["runs"] if x["input"] == name}
            one, two_threads, two_workers = (runs[v[0]]["wall_s"] for v in VARIANTS)
            lines.append(f"\n{name}: 2 workers = {one / two_workers:.2f}× one worker, {two_threads / two_workers:.2f}× "
                         "one worker with 2 threads.")
        lines.append("")
    big, small = p["big_file"], p["small_files"]
    lines += ["### Projection at the template's defaults", "",
              f"MemorySize {t['MemorySize']} MB, ChunkRows {t['ChunkRows']:,}, MapMaxConcurrency {t['MapMaxConcurrency']}, "
              f"ReservedConcurrency {t['ReservedConcurrency']}; state transitions counted from the definitions' success paths "
              f"(score-file: {r['transitions']['score_file'][0]} + {r['transitions']['score_file'][1]} per chunk; backlog: "
              f"{r['transitions']['backlog'][0]} + {r['transitions']['backlog'][1]} per file); Lambda ${LAMBDA_GB_S} per "
              "GB-s + $0.20 per million requests, Step Functions STANDARD $0.025 per 1,000 transitions.", "",
              "| Job | Wall | Lambda $ | Step Functions $ | $ per million tweets |", "|---|---|---|---|---|",
              f"| one file of {big['lines']:,} lines ({big['input_gb']} GB): plan {big['plan_s']} s, {big['chunks']} chunks of "
              f"{big['chunk_s']} s in {big['waves']} wave(s), merge {big['merge_s']} s | {big['wall_s'] / 60:.1f} min | "
              f"{big['lambda_usd']} | {big['stepfunctions_usd']} | {big['usd_per_million']} |",
              f"| {small['files']:,} files of {small['lines_each']:,} lines, {small['concurrency']} at a time "
              f"({small['per_file_s']} s each) | {small['wall_s'] / 60:.1f} min | {small['lambda_usd']} | "
              f"{small['stepfunctions_usd']} | {small['usd_per_million']} |", "",
              f"Target for the big file: at most 5 min and $0.06 per million tweets: "
              f"{'met' if big['wall_s'] <= 300 and big['usd_per_million'] <= 0.06 else 'NOT met'} "
              f"({big['wall_s'] / 60:.1f} min, ${big['usd_per_million']}).", END]
    return "\n".join(lines)


def write_section(doc: Path, section: str) -> None:
    """Replace the scale-out section of `doc` (or append it)."""
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)


def measure_all(texts: list[str], *, model_dir: Path = SHIPPED, plan_lines: int = 1_000_000,
                workers_lines: int = 100_000, files: int = 200, file_lines: int | None = None,
                chunk_rows: int | None = None,
                command: str = "python -m benchmarks.scaleout") -> dict:
    """Every scale-out measurement and the projection, as one JSON-able dict."""
    from benchmarks.run import cpu_info

    tmpl = template_defaults()
    workdir = Path(tempfile.mkdtemp(prefix="tweetmood-scaleout-"))
    try:
        load = os.getloadavg()[0]
        measured = plan_merge_and_chunk(model_dir, texts, workdir, plan_lines, chunk_rows or tmpl["ChunkRows"])
        workers = workers_runs(model_dir, texts, workdir, workers_lines, files, file_lines) if workers_lines else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    counts = {"score_file": transitions(SCORE_FILE_ASL), "backlog": transitions(BACKLOG_ASL)}
    info = cpu_info()
    return {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu": f"{info.get('cpu', '?')}, {info['cores']} cores, flags {', '.join(info.get('flags', []))}",
            "load_avg_1min": round(load, 1), "template": tmpl, "transitions": counts, "measured": measured,
            "workers": workers, "projection": project(measured, tmpl, counts["score_file"], counts["backlog"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "emotion")
    p.add_argument("--model", type=Path, default=SHIPPED)
    p.add_argument("--plan-lines", type=int, default=1_000_000, help="lines in the file the plan pass reads")
    p.add_argument("--workers-lines", type=int, default=100_000,
                   help="lines scored by each `tweetmood score` run (0: skip those runs)")
    p.add_argument("--files", type=int, default=200, help="files in the folder run")
    p.add_argument("--file-lines", type=int, default=None,
                   help="lines in each file of the folder run (default: --workers-lines spread over --files)")
    p.add_argument("--chunk-rows", type=int, default=None,
                   help="rows in the chunk scored for the per-chunk rate (default: the template's ChunkRows)")
    p.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    test = args.data_dir / "test.txt"
    texts = [line.rpartition(";")[0] for line in test.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = measure_all(texts, model_dir=args.model, plan_lines=args.plan_lines, workers_lines=args.workers_lines,
                         files=args.files, file_lines=args.file_lines, chunk_rows=args.chunk_rows, command=" ".join(["python -m benchmarks.scaleout", *(argv or sys.argv[1:])]))
    (args.docs / "benchmarks-scaleout.json").write_text(json.dumps(result, indent=2) + "\n")
    write_section(args.docs / "benchmarks.md", render(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
