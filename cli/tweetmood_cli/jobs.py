"""`tweetmood score` jobs: many files or big ones on a process pool, running the state machine's steps
(plan → score a chunk → merge, from `tweetmood.scaleout`) on a laptop's cores; one worker scores serially."""

from __future__ import annotations

import dataclasses
import glob
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from tweetmood import keys, scaleout
from tweetmood.inline import read_manifest, score_s3_object, settled
from tweetmood.manifest import OutputManifest
from tweetmood.readers import FORMAT_NAMES, input_format
from tweetmood.scoring import check_local_output, local_manifest_path, score_file
from tweetmood.settings import Settings
from tweetmood.storage import LocalStorage, S3Storage

RESULT_MARK = ".scored."
# Progress is drawn every this many rows in a serial run (one update per row would cost more than the row).
PROGRESS_EVERY = 512


@dataclasses.dataclass
class Result:
    """One input's outcome: its manifest and where the result and manifest are."""

    manifest: OutputManifest
    output: str
    manifest_path: str


# --- inputs --------------------------------------------------------------------------


def _is_input(path: Path) -> bool:
    name = path.name
    return (path.is_file() and input_format(name) is not None and RESULT_MARK not in name
            and not name.startswith("."))


def local_inputs(spec: str) -> tuple[list[Path], Path]:
    """The files a FILE, FOLDER or GLOB names (results of earlier runs left out), and the folder they are below."""
    path = Path(spec)
    if path.is_file():
        return [path], path.parent
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _is_input(p))
        base = path
    elif glob.has_magic(spec):
        files = sorted(p for p in map(Path, glob.glob(spec, recursive=True)) if _is_input(p))
        base = Path(os.path.commonpath([str(p.parent) for p in files])) if files else Path(".")
    else:
        raise FileNotFoundError(f"{spec} is not a file, a folder or a glob that matches anything")
    if not files:
        raise FileNotFoundError(f"{spec} holds no {FORMAT_NAMES} files (optionally .gz)")
    return files, base


def local_output(path: Path, base: Path, output: str | None, many: bool, fmt: str) -> Path:
    """`--output` for one input; for several, `--output` is a folder mirroring the inputs' folders."""
    if output and not many:
        return Path(output)
    name = f"{path.name}{RESULT_MARK}{fmt}"
    if output:
        return Path(output) / path.relative_to(base).parent / name
    return path.with_name(name)


# --- the pool ------------------------------------------------------------------------

_worker: dict = {}


def _open_storage(spec: tuple) -> Any:
    if spec[0] == "s3":
        import boto3

        return S3Storage(boto3.client("s3", endpoint_url=spec[1]))
    return LocalStorage()


def _init_worker(storage_spec: tuple, settings: Settings) -> None:
    """Once per worker process: its storage and its model (one onnxruntime session, ORT_THREADS threads)."""
    from tweetmood.model_store import load_classifier

    _worker.update(storage=_open_storage(storage_spec), settings=settings, classifier=load_classifier(settings))


def _plan_in_worker(run: dict) -> dict:
    return scaleout.plan(_worker["storage"], _worker["settings"], run)


def _score_in_worker(item: dict) -> dict:
    return scaleout.score_chunk(_worker["storage"], _worker["classifier"], _worker["settings"], item)


def run_on_pool(runs: list[dict], storage_spec: tuple, settings: Settings, workers: int, bar: Any,
                invocations: int | None) -> list[dict]:
    """Plan every run, score all their chunks on `workers` processes, merge each run as its last chunk ends.
    Returns the runs (planned) in the order given, each with its merge summary under "summary"."""
    storage = _open_storage(storage_spec)
    # spawn: a forked onnxruntime or boto3 client is not safe to use in the child.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(storage_spec, settings)) as pool:
        planned = list(pool.map(_plan_in_worker, runs))
        items = {run["run_id"]: scaleout.read_plan(storage, run) for run in planned}
        bar.reset(total=sum(i["rows"] or 0 for its in items.values() for i in its))
        by_id = {run["run_id"]: run for run in planned}
        left = {run_id: len(its) for run_id, its in items.items()}
        # Big files first: their chunks come first, so no worker waits on one long tail.
        queue = [i for its in sorted(items.values(), key=len, reverse=True) for i in its]
        futures = {pool.submit(_score_in_worker, item): item for item in queue}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                item = futures.pop(future)
                bar.update(future.result()["rows"])
                left[item["run_id"]] -= 1
                if not left[item["run_id"]]:
                    run = by_id[item["run_id"]]
                    run["summary"] = scaleout.merge_run(storage, settings, run, invocations=invocations)
    return planned


def _progress(enabled: bool):
    from tqdm import tqdm

    return tqdm(total=None, unit=" rows", unit_scale=True, disable=not enabled, file=sys.stderr, smoothing=0.1)


def _row_counter(bar: Any) -> Callable[[Any], None]:
    def on_row(progress) -> None:
        if progress.rows % PROGRESS_EVERY == 0:
            bar.update(PROGRESS_EVERY)

    return on_row


# --- local files ---------------------------------------------------------------------


def score_local(spec: str, settings: Settings, *, workers: int, output: str | None, progress: bool) -> list[Result]:
    """Score the local files `spec` names; with one worker in this process, else on a pool of `workers`."""
    files, base = local_inputs(spec)
    many = len(files) > 1 or Path(spec).is_dir() or glob.has_magic(spec)
    outputs = [local_output(p, base, output, many, settings.output_format) for p in files]
    for path, out in zip(files, outputs):
        check_local_output(path, out)
    with _progress(progress) as bar:
        if workers == 1:
            from tweetmood.model_store import load_classifier

            classifier = load_classifier(settings)
            manifests = [score_file(p, o, classifier=classifier, settings=settings, on_row=_row_counter(bar))
                         for p, o in zip(files, outputs)]
            return [Result(m, str(o), str(local_manifest_path(o))) for m, o in zip(manifests, outputs)]
        runs = []
        for i, (path, out) in enumerate(zip(files, outputs)):
            out.parent.mkdir(parents=True, exist_ok=True)
            staging = out.parent / f".tweetmood-staging-{os.getpid()}-{i}"
            runs.append(scaleout.local_run(str(path), str(out), str(staging), run_id=f"local-{i}"))
        done = run_on_pool(runs, ("local",), settings, workers, bar, invocations=1)
    results = []
    for run, out in zip(done, outputs):
        manifest = OutputManifest.from_json(local_manifest_path(out).read_bytes())
        results.append(Result(manifest, str(out), str(local_manifest_path(out))))
    return results


# --- S3 ------------------------------------------------------------------------------


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri} should look like s3://bucket/key or s3://bucket/prefix/")
    return bucket, key


def score_s3(uri: str, settings: Settings, *, workers: int, endpoint_url: str | None, force: bool,
             output: str | None, progress: bool) -> list[Result]:
    """Score the S3 object or every input below the prefix `uri` names into the bucket's output prefix."""
    import boto3

    if output:
        raise ValueError("--output does not apply to S3 inputs: results go below OUTPUT_PREFIX in the same bucket")
    bucket, key = split_s3(uri)
    if key.startswith(settings.output_prefix):
        raise ValueError(f"{uri} is under OUTPUT_PREFIX={settings.output_prefix!r}: it is a result, not an input")
    if not key.startswith(settings.input_prefix):
        settings = dataclasses.replace(settings, input_prefix="")  # results go to <OUTPUT_PREFIX>results/<key>
    storage = S3Storage(boto3.client("s3", endpoint_url=endpoint_url))
    objects = [o for o in storage.list(bucket, key) if o.key == key or key.endswith("/") or not key]
    objects = [o for o in objects if keys.is_scoreable_key(o.key, o.size, settings)[0]]
    if not objects:
        raise FileNotFoundError(f"{uri} names no {FORMAT_NAMES} objects (optionally .gz)")
    results: list[Result] = []
    todo = []
    for obj in objects:
        previous = read_manifest(storage, bucket, obj.key, settings)
        if not force and settled(previous, obj.etag, settings):
            results.append(_s3_result(bucket, obj.key, dataclasses.replace(previous, skipped=True), settings))
        else:
            todo.append(obj)
    with _progress(progress) as bar:
        if workers == 1:
            from tweetmood.model_store import load_classifier

            classifier = load_classifier(settings)
            for obj in todo:
                manifest = score_s3_object(storage, bucket, obj.key, settings=settings, classifier=classifier,
                                           etag=obj.etag, force=force)
                bar.update(manifest.rows_read)
                results.append(_s3_result(bucket, obj.key, manifest, settings))
            return results
        runs = []
        for obj in todo:
            run_id = scaleout.execution_name(bucket, obj.key, obj.etag or "", None) + f"-{os.getpid()}"
            runs.append({"bucket": bucket, "key": obj.key, "etag": obj.etag, "run_id": run_id,
                         "staging": keys.staging_prefix_for(run_id, settings),
                         "output_key": keys.output_key_for(obj.key, settings),
                         "manifest_key": keys.manifest_key_for(obj.key, settings)})
        run_on_pool(runs, ("s3", endpoint_url), settings, workers, bar, invocations=None)
    for run in runs:
        manifest = OutputManifest.from_json(storage.read_bytes(bucket, run["manifest_key"]))
        results.append(_s3_result(bucket, run["key"], manifest, settings))
    return results


def _s3_result(bucket: str, key: str, manifest: OutputManifest, settings: Settings) -> Result:
    return Result(manifest, f"s3://{bucket}/{keys.output_key_for(key, settings)}",
                  f"s3://{bucket}/{keys.manifest_key_for(key, settings)}")


# --- report --------------------------------------------------------------------------


def print_results(results: list[Result], detail_up_to: int = 5) -> None:
    """Each input's summary when there are few, else totals and the failures."""
    if len(results) <= detail_up_to:
        for r in results:
            print(r.manifest.summary())
            print(f"  output:   {r.output}\n  manifest: {r.manifest_path}")
        return
    complete = [r for r in results if r.manifest.complete]
    failed = [r for r in results if not r.manifest.complete]
    rows = sum(r.manifest.rows_read for r in results if not r.manifest.skipped)
    scored = sum(r.manifest.rows_scored for r in results if not r.manifest.skipped)
    rejected = sum(r.manifest.rows_rejected for r in results if not r.manifest.skipped)
    skipped = sum(r.manifest.skipped for r in results)
    print(f"{len(results)} inputs: {len(complete)} complete ({skipped} already scored), {len(failed)} failed")
    print(f"  rows read {rows}, scored {scored}, rejected {rejected}")
    for r in failed:
        print(f"  FAILED {r.manifest.source_key}: {r.manifest.reason}")
    print(f"  results beside each input as *{RESULT_MARK}<format>, manifests as *.manifest.json"
          if results and not results[0].output.startswith("s3://") else "  results and manifests below OUTPUT_PREFIX")
