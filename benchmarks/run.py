"""`make bench`: every model side by side in one run, the end-to-end path, cost; writes docs/benchmarks.*.

Absolute numbers drift on shared machines, so the headline is ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "layers" / "model" / "model"
# AWS Lambda x86_64 list prices (us-east-1, 2026): per GB-second and per million requests.
LAMBDA_GB_S = 0.0000166667
LAMBDA_PER_M_REQUESTS = 0.20
LAMBDA_MB_PER_VCPU = 1769
COMPREHEND_PER_M = "about $500–1,500 (custom classification, async; per the project brief)"


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "cores": len(os.sched_getaffinity(0)), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = sorted(f for f in flags if f in {
                    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                    "avx_vnni", "amx_int8", "amx_bf16", "amx_tile"})
                break
    except OSError:
        pass
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    return info


def peak_gflops(n: int = 2048, threads: int = 1, repeats: int = 5) -> float:
    """Measured fp32 GEMM peak (numpy/OpenBLAS) in a child with `threads` threads."""
    code = (
        "import numpy as np, time\n"
        f"n={n}\na=np.random.rand(n,n).astype(np.float32); b=np.random.rand(n,n).astype(np.float32)\n"
        "a@b\nbest=1e9\n"
        f"for _ in range({repeats}):\n t=time.perf_counter(); a@b; best=min(best,time.perf_counter()-t)\n"
        "print(2*n**3/best/1e9)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def peak_int8_gops(n: int = 2048, threads: int = 1, repeats: int = 5) -> float:
    """Measured int8 GEMM peak of onnxruntime's CPU kernels: uint8 x int8 MatMulInteger, n x n, one session."""
    code = (
        "import numpy as np, time, onnxruntime as ort\n"
        "from onnx import TensorProto, helper, numpy_helper\n"
        f"n={n}\nrng=np.random.default_rng(0)\n"
        "b=numpy_helper.from_array(rng.integers(-127,128,(n,n),dtype=np.int8),'b')\n"
        "g=helper.make_graph([helper.make_node('MatMulInteger',['a','b'],['y'])],'g',"
        "[helper.make_tensor_value_info('a',TensorProto.UINT8,[n,n])],"
        "[helper.make_tensor_value_info('y',TensorProto.INT32,[n,n])],[b])\n"
        "m=helper.make_model(g,opset_imports=[helper.make_opsetid('',13)])\n"
        f"o=ort.SessionOptions(); o.intra_op_num_threads={threads}\n"
        "s=ort.InferenceSession(m.SerializeToString(),o,providers=['CPUExecutionProvider'])\n"
        "a=rng.integers(0,256,(n,n),dtype=np.uint8); s.run(None,{'a':a})\nbest=1e9\n"
        f"for _ in range({repeats}):\n t=time.perf_counter(); s.run(None,{{'a':a}}); best=min(best,time.perf_counter()-t)\n"
        "print(2*n**3/best/1e9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def measure(kind: str, model: str, test: Path, threads: int, limit: int = 0, extra: tuple[str, ...] = ()) -> dict:
    env = dict(os.environ, BENCH_T0=repr(time.time()), OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "layers" / "core"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "benchmarks.measure", kind, "--model", model, "--test", str(test), "--threads", str(threads)]
    if limit:
        cmd += ["--limit", str(limit)]
    cmd += list(extra)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def dir_size_mb(path: Path, names: tuple[str, ...] = ("model.onnx", "model.safetensors", "pytorch_model.bin")) -> float:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.name in names) / 1e6


def flops_per_tweet(config: dict, tokens: float, cls_only_last_layer: bool = False) -> float:
    """Multiply-adds x2 of a BERT-style encoder + classifier head for one sequence of `tokens` tokens; with
    `cls_only_last_layer` the last layer computes keys and values for every token and the rest for [CLS] only."""
    h, layers, ff = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    per_layer_token = 2 * (4 * h * h + 2 * h * ff)  # Q, K, V, output projections and the two FFN matmuls
    attention = 2 * 2 * tokens * tokens * h  # QK^T and AV
    full = layers if not cls_only_last_layer else layers - 1
    total = full * (per_layer_token * tokens + attention)
    if cls_only_last_layer:
        total += 2 * (2 * h * h) * tokens + (per_layer_token - 2 * (2 * h * h)) + 2 * 2 * tokens * h
    return total + 2 * (h * h + h * 6)


def mean_tokens(model_dir: Path, texts: list[str]) -> float:
    from tokenizers import Tokenizer

    from tweetmood.normalize import normalize_tweet

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    return float(np.mean([len(e.ids) for e in tok.encode_batch([normalize_tweet(t) for t in texts])]))


def raw_million_file(path: Path, test_texts: list[str], lines: int, seed: int = 0) -> dict:
    """`lines` raw tweets (re-cased, punctuated, @mentions, URLs, emoji), with blank and undecodable lines."""
    from training.rawify import rawify

    rng = random.Random(seed)
    pool = [rawify(t, rng) for t in test_texts]
    blank = bad = 0
    with open(path, "wb") as fh:
        for i in range(lines):
            r = rng.random()
            if r < 0.002:
                fh.write(b"\n")
                blank += 1
            elif r < 0.003:
                fh.write(b"caf\xe9 \xff\xfe broken bytes\n")
                bad += 1
            else:
                fh.write(pool[i % len(pool)].replace("\n", " ").encode("utf-8") + b"\n")
    return {"lines": lines, "blank": blank, "undecodable": bad, "bytes": path.stat().st_size}


def end_to_end(model_dir: Path, test_texts: list[str], lines: int, threads: int, workdir: Path) -> dict:
    """`tweetmood score` on a generated raw file in a fresh process: wall time, tweets/s, peak RSS, time outside the model.

    One process with `threads` onnxruntime threads (`--workers 1`), the path a Lambda runs inline: the CLI's default of
    one worker per core would put the work, its memory and its model time in child processes this cannot see (the
    scale-out section measures those)."""
    src = workdir / f"tweets-{lines}.txt"
    info = raw_million_file(src, test_texts, lines)
    out = workdir / f"tweets-{lines}.jsonl"
    env = dict(os.environ, ORT_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    rss_file = workdir / "score.peak_rss_mb"
    # The CLI exactly as a user runs it, reporting its own peak RSS when it exits (see measure.peak_rss_mb).
    code = ("import atexit, runpy, sys; from benchmarks.measure import peak_rss_mb; "
            f"atexit.register(lambda: open({str(rss_file)!r}, 'w').write(str(peak_rss_mb()))); "
            f"sys.argv = ['tweetmood', 'score', {str(src)!r}, '--output', {str(out)!r}, '--model', {str(model_dir)!r}, "
            f"'--workers', '1', '--threads', '{threads}']; "
            "runpy.run_module('tweetmood_cli.cli', run_name='__main__')")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "layers" / "core"), env.get("PYTHONPATH", "")])
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"tweetmood score failed:\n{proc.stderr[-3000:]}")
    peak_mb = float(rss_file.read_text())
    manifest = json.loads(Path(str(out) + ".manifest.json").read_text())
    with open(out, "rb") as fh:
        out_rows = sum(1 for _ in fh)
    return {
        **info,
        "threads": threads,
        "wall_s": round(wall, 1),
        "rows_read": manifest["rows_read"],
        "rows_scored": manifest["rows_scored"],
        "rows_rejected": manifest["rows_rejected"],
        "output_rows": out_rows,
        "tweets_per_s": round(manifest["rows_scored"] / wall, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "model_s": manifest.get("model_s"),
        "duration_s": manifest["duration_s"],
        "outside_model_share": round(1 - manifest.get("model_s", 0) / manifest["duration_s"], 3),
    }


def lambda_curve(tps_1: float, tps_2: float, memory_sizes=(512, 1024, 1769, 2048, 3008, 3538)) -> list[dict]:
    """Tweets/s and cost per million tweets against Lambda memory, from the measured 1- and 2-thread rates.

    Lambda gives CPU in proportion to memory: 1,769 MB is one vCPU, 3,538 MB two. Below one vCPU the
    function gets that share of one core; between one and two vCPUs it runs two threads on a fractional
    second core, interpolated between the measured 1- and 2-thread rates.
    """
    rows = []
    for mb in memory_sizes:
        vcpu = mb / LAMBDA_MB_PER_VCPU
        tps = tps_1 * vcpu if vcpu <= 1 else tps_1 + (tps_2 - tps_1) * min(vcpu - 1, 1)
        seconds = 1e6 / tps
        cost = seconds * (mb / 1024) * LAMBDA_GB_S
        rows.append({"memory_mb": mb, "vcpu": round(vcpu, 2), "tweets_per_s": round(tps, 1),
                     "seconds_per_million": round(seconds), "usd_per_million": round(cost, 4)})
    return rows


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = {"b": "(b) PyTorch fp32", "c": "(c) ONNX fp32", "d": "(d) int8, shipped", "e-dnn": "(e) TF-IDF + DNN",
             "e-bilstm": "(e) BiLSTM"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(x for x in rows if x.get("accuracy") is not None):
        key, point = r["key"], (r["tweets_per_s_1"], r["accuracy"])
        if key == "d":  # the shipped model stands out; models shipped before are hollow beside it
            ax.scatter(*point, s=220, marker="*", color="black", zorder=3)
        elif key.startswith("prev-"):
            ax.scatter(*point, s=60, facecolors="none", edgecolors="grey")
        else:
            ax.scatter(*point, s=60, marker="D" if key.startswith("f-") else "o")
        label = short.get(key) or ("shipped before " + key[5:] if key.startswith("prev-") else key)
        if key == "d":
            ax.annotate(label, point, textcoords="offset points", fontsize=9, fontweight="bold", xytext=(40, 22),
                        arrowprops={"arrowstyle": "-", "color": "black", "lw": 0.8})
        else:
            ax.annotate(label, point, textcoords="offset points", fontsize=9, xytext=(6, -12 if i % 2 else 6))
    ax.margins(y=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("tweets/s, 1 thread (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title("tweetmood: accuracy against CPU throughput (same run)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _checkpoint(explicit: str | None, workdir: Path) -> tuple[Path, bool]:
    """The shipped transformer's PyTorch checkpoint, or the same architecture with a random head (speed only)."""
    for cand in [explicit, "runs/ship/checkpoint", "runs/latest/transformer/checkpoint", "runs/gpu-sweep-1/checkpoint"]:
        if cand and (ROOT / cand / "config.json").is_file():
            return ROOT / cand, True
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.transformer import default_base_model

    meta = json.loads((SHIPPED / "model.json").read_text())
    out = workdir / "random-head-checkpoint"
    torch.manual_seed(0)
    labels = meta["labels"]
    model = AutoModelForSequenceClassification.from_pretrained(
        default_base_model(), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(default_base_model()).save_pretrained(out)
    (out / "tweetmood_training.json").write_text(json.dumps({"preprocess": "normalize", "max_length": meta["max_length"],
                                                             "labels": labels}))
    return out, False


def _fp32_serving(checkpoint: Path, trained: bool, workdir: Path) -> Path:
    if trained and checkpoint == ROOT / "runs/ship/checkpoint" and (ROOT / "runs/ship/serving-fp32/model.json").is_file():
        return ROOT / "runs/ship/serving-fp32"
    from training.export import export_serving_model

    meta = json.loads((SHIPPED / "model.json").read_text())
    return export_serving_model(checkpoint, workdir / "export", workdir / "serving-fp32", meta["labels"],
                                meta["max_length"], "bench-fp32", quantization="fp32")


def _int8_variants(checkpoint: Path, shipped_meta: dict, data_dir: Path, workdir: Path,
                   variants: list[tuple[str, bool]]) -> list[Path]:
    """The same checkpoint quantized other ways (quantization, CLS-only graph?), to measure what one step of the
    shipped recipe buys: one ONNX export, calibrated on the same training texts as the shipped export."""
    from training.data import load_splits
    from training.export import CALIBRATION_TEXTS, export_onnx, export_serving_model

    if not variants:
        return []
    calibration = [e.text for e in load_splits(data_dir).train[:CALIBRATION_TEXTS]]
    work = workdir / "export-variants"
    fp32 = export_onnx(checkpoint, work)
    dirs = []
    for quantization, cls_only in variants:
        name = f"{quantization}-{'cls-only' if cls_only else 'full'}"
        dirs.append(export_serving_model(checkpoint, work, workdir / f"serving-{name}", shipped_meta["labels"],
                                         shipped_meta["max_length"], f"bench-{name}", quantization, calibration,
                                         fp32_graph=fp32, cls_only=cls_only))
    return dirs


def _runtime_ops(model_dir: Path, workdir: Path) -> dict:
    """Compute operators onnxruntime runs for a model after its load-time fusions (bookkeeping ops left out)."""
    from training.export import _BOOKKEEPING_OPS, runtime_ops

    ops = runtime_ops(model_dir / "model.onnx", workdir / "runtime-ops.onnx")
    return {k: v for k, v in sorted(ops.items()) if k not in _BOOKKEEPING_OPS}


def _baseline_dirs() -> dict[str, Path]:
    found = {}
    for name, alias in (("dnn", "tfidf-dnn"), ("bilstm", "bilstm")):
        for cand in (f"runs/latest/baselines/{name}", f"runs/baselines/{alias}", f"runs/baselines/{name}"):
            if (ROOT / cand / "model.json").is_file():
                found[name] = ROOT / cand
                break
    return found


def _model_row(spec: str, key: str, label: str) -> dict:
    """A serving directory or `git:REV:PATH` (checked out from git) as a row beside (d): a model shipped before
    (key "prev") or one not shipped (key "f"). `version` and `source` are kept for the report's sentences."""
    from benchmarks.compare_models import model_dir

    path = model_dir(spec)
    version = json.loads((path / "model.json").read_text()).get("version", "?")
    return {"key": f"{key}-{version.rsplit('-', 1)[-1]}", "label": f"{label}: {version} ({spec}), scoring core",
            "version": version, "source": spec, "kind": "core", "model": str(path), "size_mb": dir_size_mb(path)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "emotion")
    p.add_argument("--docs", type=Path, default=ROOT / "docs", help="where benchmarks.md/.json/.png go")
    p.add_argument("--checkpoint", default=None, help="PyTorch checkpoint of the shipped transformer")
    p.add_argument("--e2e-lines", type=int, default=1_000_000, help="lines in the generated end-to-end file")
    p.add_argument("--limit", type=int, default=0, help="score only the first N test tweets per model")
    p.add_argument("--original-limit", type=int, default=256, help="tweets for (a), the slow original shape")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--quick", action="store_true", help="tiny run for the tests: shipped model and end to end only")
    p.add_argument("--previous", action="append", default=[], metavar="DIR|git:REV:PATH",
                   help="a model shipped before (repeatable), measured in this run beside (d): is the shipped model "
                        "slower than the one it replaced? e.g. git:8f880f9:layers/model/model")
    p.add_argument("--also", action="append", default=[], metavar="DIR",
                   help="a serving directory that is not shipped (repeatable), e.g. a smaller student: an (f) row")
    p.add_argument("--scaleout-lines", type=int, default=100_000,
                   help="lines per `tweetmood score --workers` run in the scale-out section (0: skip those runs)")
    args = p.parse_args(argv)

    test = args.data_dir / "test.txt"
    texts = [line.rpartition(";")[0] for line in test.read_text(encoding="utf-8").splitlines() if line.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="tweetmood-bench-"))
    shipped_meta = json.loads((SHIPPED / "model.json").read_text())
    models: list[dict] = []
    if not args.quick:
        checkpoint, trained = _checkpoint(args.checkpoint, workdir)
        fp32 = _fp32_serving(checkpoint, trained, workdir)
        models += [
            {"key": "a", "label": "(a) original: DistilBERT-base-multilingual shape, PyTorch fp32, pad 100",
             "kind": "original", "model": str(SHIPPED / "tokenizer.json"), "size_mb": 4 * 135.3e6 / 1e6,
             "limit": args.original_limit},
            {"key": "b-file", "label": "(b) shipped transformer, PyTorch fp32, transformers pipeline, batches in file "
                                       "order" + ("" if trained else " (random head)"),
             "kind": "torch", "model": str(checkpoint), "size_mb": dir_size_mb(checkpoint), "extra": ("--file-order",)},
            {"key": "b", "label": "(b) shipped transformer, PyTorch fp32, transformers pipeline, batches sorted by token count" + ("" if trained else " (random head)"),
             "kind": "torch", "model": str(checkpoint), "size_mb": dir_size_mb(checkpoint)},
            {"key": "c", "label": "(c) same model, ONNX fp32 (fused graph), scoring core",
             "kind": "core", "model": str(fp32), "size_mb": dir_size_mb(fp32)},
        ]
    if not args.quick:
        cls_only = shipped_meta.get("graph") == "cls-only-last-layer"
        variants = {}  # key -> (quantization, CLS-only graph?, label)
        if cls_only:
            variants["d-full"] = (shipped_meta["quantization"], False,
                                  "(d) same int8, full graph (every layer for every token), scoring core")
        if shipped_meta.get("execution") != "per-row":
            variants["d-dyn"] = ("int8-dynamic-embeddings", cls_only,
                                 "(d) same graph, dynamic int8 (scales per call), one tweet per call, scoring core")
        built = _int8_variants(checkpoint, shipped_meta, args.data_dir, workdir, [v[:2] for v in variants.values()])
        for (key, (_, _, label)), path in zip(variants.items(), built):
            models.append({"key": key, "label": label, "kind": "core", "model": str(path), "size_mb": dir_size_mb(path)})
    models.append({"key": "d", "label": f"(d) shipped int8 ONNX ({shipped_meta.get('quantization')}, "
                                        f"{shipped_meta.get('graph', 'full')} graph), scoring core",
                   "kind": "core", "model": str(SHIPPED), "size_mb": dir_size_mb(SHIPPED)})
    models += [_model_row(spec, "prev", "(d′) shipped before") for spec in args.previous]
    models += [_model_row(spec, "f", "(f) not shipped") for spec in args.also]
    if not args.quick:
        for name, path in _baseline_dirs().items():
            models.append({"key": f"e-{name}", "label": f"(e) {name} baseline ONNX, scoring core", "kind": "core",
                           "model": str(path), "size_mb": dir_size_mb(path)})

    rows = []
    for m in models:
        row = {k: m[k] for k in ("key", "label", "kind", "model", "version", "source") if k in m}
        row["size_mb"] = round(m["size_mb"], 1)
        for threads in args.threads:
            limit = m.get("limit") or args.limit
            print(f"measuring {m['label']} with {threads} thread(s)…", flush=True)
            r = measure(m["kind"], m["model"], test, threads, limit, m.get("extra", ()))
            row[f"tweets_per_s_{threads}"] = round(r["tweets_per_s"], 1)
            row[f"batch_p50_ms_{threads}"] = round(r["batch_p50_ms"], 1)
            row[f"batch_p99_ms_{threads}"] = round(r["batch_p99_ms"], 1)
            row[f"peak_rss_mb_{threads}"] = round(r["peak_rss_mb"], 1)
            row[f"cold_start_s_{threads}"] = round(r["cold_start_s"], 2)
            row["n"] = r["n"]
            if r["accuracy"] is not None and "random head" not in m["label"]:
                row["accuracy"] = round(r["accuracy"], 4)
        rows.append(row)
        print(json.dumps(row), flush=True)

    by_key = {r["key"]: r for r in rows}
    ratios = {}
    for t in args.threads:
        d = by_key["d"][f"tweets_per_s_{t}"]
        for ref in ("a", "b-file", "b", "c", "d-full", "d-dyn", *(r["key"] for r in rows if r["key"].startswith(("prev-", "f-")))):
            if ref in by_key:
                ratios[f"d_over_{ref.replace('-', '_')}_{t}thread"] = round(d / by_key[ref][f"tweets_per_s_{t}"], 2)

    print(f"end to end: tweetmood score on {args.e2e_lines:,} generated lines…", flush=True)
    e2e = end_to_end(SHIPPED, texts, args.e2e_lines, max(args.threads), workdir)
    print(json.dumps(e2e), flush=True)

    config_file = checkpoint / "config.json" if not args.quick else ROOT / "runs/ship/checkpoint/config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else \
        {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536}
    tokens = mean_tokens(SHIPPED, texts)
    flops = flops_per_tweet(config, tokens, shipped_meta.get("graph") == "cls-only-last-layer")
    peak1 = peak_gflops(threads=1)
    peak_int8 = peak_int8_gops(threads=1)
    d1 = by_key["d"][f"tweets_per_s_{args.threads[0]}"]
    compute = {"quantization": shipped_meta.get("quantization"), "mean_tokens": round(tokens, 1), "gflop_per_tweet": round(flops / 1e9, 3),
               "gflop_per_tweet_full_graph": round(flops_per_tweet(config, tokens) / 1e9, 3),
               "runtime_ops": _runtime_ops(SHIPPED, workdir),
               "achieved_gflops_1thread": round(flops * d1 / 1e9, 1), "fp32_gemm_peak_gflops_1thread": round(peak1, 1),
               "int8_gemm_peak_gops_1thread": round(peak_int8, 1),
               "ceiling_tweets_per_s_1thread": round(peak_int8 * 1e9 / flops, 1)}
    curve = lambda_curve(by_key["d"].get("tweets_per_s_1", d1), by_key["d"].get("tweets_per_s_2", d1))
    from benchmarks.scaleout import measure_all

    print("scale-out: plan pass, one chunk, merge, tweetmood score --workers…", flush=True)
    workers_lines = 0 if args.quick else args.scaleout_lines
    scaleout = measure_all(texts, plan_lines=args.e2e_lines, workers_lines=workers_lines,
                           files=min(200, max(1, workers_lines)), command="make bench")
    result = {"machine": cpu_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "models": rows,
              "ratios": ratios, "end_to_end": e2e, "compute": compute, "lambda_curve": curve, "scaleout": scaleout,
              "prices": {"lambda_x86_usd_per_gb_s": LAMBDA_GB_S, "lambda_usd_per_million_requests": LAMBDA_PER_M_REQUESTS,
                         "comprehend_per_million": COMPREHEND_PER_M},
              "command": "make bench" + (" (quick)" if args.quick else "")}
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "benchmarks.json").write_text(json.dumps(result, indent=2) + "\n")
    chart(rows, args.docs / "benchmarks.png")
    (args.docs / "benchmarks.md").write_text(render(result))
    print(f"wrote {args.docs / 'benchmarks.md'}, benchmarks.json, benchmarks.png")
    shutil.rmtree(workdir, ignore_errors=True)  # the generated file and its results: hundreds of MB at 1M lines
    return 0


def _versus_fp32(c: dict, by: dict, t: int) -> list[str]:
    """How far int8 can lead (b) on this CPU: (b)'s share of the fp32 peak against what 5x (b) asks of the int8 peak."""
    if "b" not in by or not c.get("int8_gemm_peak_gops_1thread"):
        return []
    b = by["b"][f"tweets_per_s_{t}"]
    b_gflops = b * c["gflop_per_tweet_full_graph"]
    peak_ratio = c["int8_gemm_peak_gops_1thread"] / c["fp32_gemm_peak_gflops_1thread"]
    five = 5 * b * c["gflop_per_tweet"]
    return [f"(b) runs the full graph at {b_gflops:.1f} GFLOP/s, {100 * b_gflops / c['fp32_gemm_peak_gflops_1thread']:.0f}% "
            f"of the fp32 peak. The int8 peak is {peak_ratio:.2f}× the fp32 peak on this CPU, so (d) at the same share of "
            f"its peak would run {peak_ratio * c['gflop_per_tweet_full_graph'] / c['gflop_per_tweet']:.1f}× (b); 5× (b) "
            f"needs {five:.0f} GOP/s, {100 * five / c['int8_gemm_peak_gops_1thread']:.0f}% of the int8 peak.", ""]


def _int8_units(machine: dict) -> str:
    """The CPU flags that decide int8 GEMM speed, in words (AMX, VNNI), or that it has neither."""
    units = [f for f in ("amx_int8", "avx512_vnni", "avx_vnni") if f in machine.get("flags", [])]
    return ", ".join(units) or "neither AMX nor VNNI"


def _fmt(v, spec: str = "") -> str:
    return "–" if v is None else format(v, spec)


def render(r: dict) -> str:
    m = r["machine"]
    threads = sorted({int(k.rsplit("_", 1)[1]) for row in r["models"] for k in row if k.startswith("tweets_per_s_")})
    head = "| Model | Test acc. | Size MB | " + " | ".join(
        f"tweets/s {t}T | p50 / p99 ms {t}T" for t in threads) + " | Cold start s | Peak RSS MB |"
    lines = [
        "# Benchmarks", "",
        f"Measured by `{r['command']}` on {r['date']}: {m.get('cpu', '?')}, {m['cores']} cores, flags "
        f"{', '.join(m.get('flags', []))}; onnxruntime {m['onnxruntime']}, Python {m['python']}.",
        "Every model runs in a fresh process (cold start counts interpreter start and imports) over the test file "
        "in batches of 64; absolute numbers drift on shared machines, so compare the ratios of one run.", "",
        head, "|" + "---|" * (5 + 2 * len(threads)),
    ]
    for row in r["models"]:
        cells = [row["label"], _fmt(row.get("accuracy"), ".4f"), _fmt(row["size_mb"], ".1f")]
        for t in threads:
            cells += [_fmt(row.get(f"tweets_per_s_{t}"), ".1f"),
                      f"{_fmt(row.get(f'batch_p50_ms_{t}'), '.0f')} / {_fmt(row.get(f'batch_p99_ms_{t}'), '.0f')}"]
        cells += [_fmt(row.get(f"cold_start_s_{threads[0]}"), ".2f"), _fmt(row.get(f"peak_rss_mb_{threads[0]}"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Ratios of (d), the shipped int8 model, in this run: " +
              ", ".join(f"{k.replace('_', ' ')} = {v}×" for k, v in r["ratios"].items()), ""]
    by = {row["key"]: row for row in r["models"]}
    before = [row for row in r["models"] if row["key"].startswith("prev-")]
    if before and "d" in by:
        lines += ["Against models shipped before, measured in this run: is the shipped model slower than the ones it "
                  "replaced?", ""]
        for row in before:
            speed = ", ".join(f"{by['d'][f'tweets_per_s_{t}'] / row[f'tweets_per_s_{t}']:.3f}× at {t}T" for t in threads)
            lines.append(f"- (d) over {row['version']} ({row['source']}): "
                         f"{speed} (test acc. {_fmt(by['d'].get('accuracy'), '.4f')} against {_fmt(row.get('accuracy'), '.4f')}).")
        lines.append("")
    others = [row for row in r["models"] if row["key"].startswith("f-")]
    if others and "d" in by:
        lines += ["Not shipped, measured in this run beside the shipped model (d):", ""]
        for row in others:
            speed = ", ".join(f"{row[f'tweets_per_s_{t}'] / by['d'][f'tweets_per_s_{t}']:.2f}× at {t}T" for t in threads)
            lines.append(f"- {row['version']} ({row['source']}): {speed} "
                         f"(d)'s tweets/s, {row['size_mb']:.1f} MB (test acc. {_fmt(row.get('accuracy'), '.4f')} against "
                         f"{_fmt(by['d'].get('accuracy'), '.4f')}).")
        lines.append("")
    if all(k in by for k in "bcd"):
        t = threads[0]
        rate = lambda k: by[k][f"tweets_per_s_{t}"]  # noqa: E731
        step = lambda a, b: f"{rate(b) / rate(a):.2f}× ({rate(a)} → {rate(b)} tweets/s)"  # noqa: E731
        int8_from = "d-full" if "d-full" in by else "d"
        ops = r["compute"].get("runtime_ops") or {}
        bullets = [
            f"- Batches sorted by token count for the PyTorch pipeline (less padding) instead of file order: "
            f"{step('b-file', 'b')}." if "b-file" in by else "",
            f"- PyTorch pipeline → ONNX fp32 fused graph through the core (length-sorted dynamic padding, one "
            f"session, orjson output): {step('b', 'c')}.",
            f"- fp32 → int8 weights and embeddings (`{r['compute'].get('quantization', 'int8')}`): "
            f"{step('c', int8_from)}, {by['c']['size_mb'] / by[int8_from]['size_mb']:.1f}× smaller on disk, peak RSS "
            f"{by['c'][f'peak_rss_mb_{t}']:.0f} → {by[int8_from][f'peak_rss_mb_{t}']:.0f} MB.",
            f"- Last layer for [CLS] only (the pooler reads nothing else; same logits within 1e-4): {step('d-full', 'd')}; "
            f"{r['compute']['gflop_per_tweet_full_graph']} → {r['compute']['gflop_per_tweet']} GFLOP per mean tweet."
            if "d-full" in by else "",
            "- Activation scales fixed at calibration, so the core can score length-sorted batches of 64 and stay "
            "batch-independent, instead of dynamic int8 one tweet per call (what batch independence cost before): "
            f"{step('d-dyn', 'd')}." if "d-dyn" in by else "",
            "- The original shape (a 135M-parameter multilingual DistilBERT padding every tweet to 100 tokens) against "
            f"the shipped model: {rate('d') / by['a'][f'tweets_per_s_{t}']:.1f}×." if "a" in by else "",
            "- Kernels onnxruntime runs for (d) after its load-time fusions: "
            + (", ".join(f"{k} ×{v}" for k, v in ops.items()) or "–")
            + f". MLAS picks its int8 GEMM for the CPU's ISA (int8 units here: {_int8_units(m)}); which kernel it "
            "dispatched was not instrumented.",
        ]
        lines += ["## What each step bought (this run, one thread)", "", *[b for b in bullets if b], ""]
    e = r["end_to_end"]
    lines += [
        "## End to end", "",
        f"`tweetmood score` on a generated file of {e['lines']:,} raw tweets ({e['bytes'] / 1e6:.0f} MB; {e['blank']} blank and "
        f"{e['undecodable']} undecodable lines) in one process with {e['threads']} onnxruntime thread(s) (`--workers 1 "
        f"--threads {e['threads']}`, the inline Lambda path): {e['wall_s']} s wall, "
        f"{e['tweets_per_s']} tweets/s, peak RSS {e['peak_rss_mb']} MB; rows read {e['rows_read']:,} = scored "
        f"{e['rows_scored']:,} + rejected {e['rows_rejected']:,}; output rows {e['output_rows']:,}. "
        f"Time outside onnxruntime (reading, normalizing, tokenizing, writing): {100 * e['outside_model_share']:.1f}%.", "",
    ]
    c = r["compute"]
    lines += [
        "## How far from the machine's limit", "",
        f"Mean test tweet: {c['mean_tokens']} tokens; the encoder needs {c['gflop_per_tweet']} GFLOP per tweet "
        f"(matrix products and attention, counted from the model's shape). At (d)'s 1-thread rate that is "
        f"{c['achieved_gflops_1thread']} GFLOP/s achieved, against a measured fp32 GEMM peak of "
        f"{c['fp32_gemm_peak_gflops_1thread']} GFLOP/s on one thread (numpy 2048×2048)"
        + (f" and an int8 GEMM peak of {c['int8_gemm_peak_gops_1thread']} GOP/s (onnxruntime MatMulInteger, uint8 × int8, "
           f"2048×2048): {100 * c['achieved_gflops_1thread'] / c['int8_gemm_peak_gops_1thread']:.0f}% of the int8 peak. "
           f"Even at 100% of that peak, with every other operator free, (d) could not pass "
           f"{c['ceiling_tweets_per_s_1thread']} tweets/s on one thread"
           + (f", {c['ceiling_tweets_per_s_1thread'] / by['b'][f'tweets_per_s_{threads[0]}']:.1f}× (b)" if "b" in by else "")
           + "." if c.get("int8_gemm_peak_gops_1thread") else "."), "",
        *_versus_fp32(c, by, threads[0]),
        "## Cost on AWS Lambda", "",
        f"Lambda x86_64 at ${r['prices']['lambda_x86_usd_per_gb_s']} per GB-second (+ ${r['prices']['lambda_usd_per_million_requests']} "
        "per million requests, negligible: one request scores a whole file). CPU scales with memory (1,769 MB = 1 vCPU); "
        "the rates below come from (d)'s measured 1- and 2-thread rates on this CPU (int8 units: "
        f"{_int8_units(m)}). Lambda does not promise which x86 CPU a function gets, and int8 speed depends on these "
        "units, so the figures hold for a CPU like this one.", "",
        "| Memory MB | vCPU | tweets/s | s per million | $ per million tweets |", "|---|---|---|---|---|",
    ]
    for row in r["lambda_curve"]:
        lines.append(f"| {row['memory_mb']} | {row['vcpu']} | {row['tweets_per_s']} | {row['seconds_per_million']} | {row['usd_per_million']} |")
    cheapest = min(r["lambda_curve"], key=lambda row: (row["usd_per_million"], -row["tweets_per_s"]))
    lines += ["", f"Cheapest per tweet: {cheapest['memory_mb']} MB (${cheapest['usd_per_million']} per million tweets; the "
              "smallest sizes cost the same per tweet but take longer per file). The template's `MemorySize` default is "
              "1769 MB, one full vCPU: the fastest size at the lowest cost per tweet, since the second vCPU adds less "
              "throughput than it adds price."]
    lines += ["", f"Amazon Comprehend custom classification: {r['prices']['comprehend_per_million']} per million texts.", "",
              "![accuracy against tweets/s](benchmarks.png)", "",
              "Reproduce: `make bench` (writes this file, benchmarks.json and benchmarks.png).", ""]
    if r.get("scaleout"):
        from benchmarks.scaleout import render as render_scaleout

        lines += [render_scaleout(r["scaleout"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
