"""Embedded local stack for `tweetmood demo`: moto's S3 on 127.0.0.1, events shaped as AWS sends them, the real handler."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote_plus

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
HANDLER_FILE = REPO / "functions" / "score_object" / "app.py"
SHIPPED_MODEL = REPO / "layers" / "model" / "model"
TINY_MODEL = REPO / "tests" / "fixtures" / "tiny-model"
REGION = "us-east-1"
DEMO_BUCKET = "tweetmood-demo"
INPUT_PREFIX, OUTPUT_PREFIX = "incoming/", "scored/"
GZIP_SAMPLES = "gzip"  # files below samples/gzip/ are uploaded gzip-compressed, as <name>.gz


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalS3:
    """moto's threaded S3 server on a free 127.0.0.1 port, for `with` blocks."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server = None

    def __enter__(self) -> "LocalS3":
        from moto.server import ThreadedMotoServer

        # One access-log line per request would bury the demo's own output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def s3_object_created_event(bucket: str, objects: list[tuple[str, int, str]], region: str = REGION) -> dict:
    """An S3 ObjectCreated:Put notification for `(key, size, etag)` objects, shaped as AWS sends it
    (keys URL-encoded the way S3 does: spaces as "+", UTF-8 percent-escaped, "/" kept)."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": now,
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLEUPLOADER"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                    "x-amz-id-2": hashlib.sha256(key.encode()).hexdigest(),
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "tweetmood-incoming",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A3EXAMPLEOWNER"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": f"{time.time_ns():X}",
                    },
                },
            }
            for key, size, etag in objects
        ]
    }


@dataclass
class FakeLambdaContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    function_name: str = "tweetmood-score-object"
    memory_limit_in_mb: int = 2048
    timeout_ms: int = 900_000
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/tweetmood-score-object"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.timeout_ms - (time.monotonic() - self._started) * 1000))


def load_handler(path: Path = HANDLER_FILE) -> Callable[[dict, Any], Any]:
    """Import a Lambda handler module by file path, as the Lambda runtime would, and return `handler`."""
    spec = importlib.util.spec_from_file_location(f"tweetmood_local_{path.parent.name}_app", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module.handler


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def handler_environment(endpoint_url: str, model_dir: Path, bucket: str = DEMO_BUCKET) -> dict[str, str]:
    """What the score_object function sees in the demo: dummy credentials, the local endpoint, the model."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": endpoint_url,
        "BUCKET_NAME": bucket,
        "INPUT_PREFIX": INPUT_PREFIX,
        "OUTPUT_PREFIX": OUTPUT_PREFIX,
        "MODEL_DIR": str(model_dir),
        "POWERTOOLS_SERVICE_NAME": "tweetmood",
        "POWERTOOLS_METRICS_NAMESPACE": "tweetmood",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def demo_model_dir() -> tuple[Path, str | None]:
    """The shipped model if the checkout has one, else the tiny test model with a notice."""
    if (SHIPPED_MODEL / "model.json").is_file():
        return SHIPPED_MODEL, None
    return TINY_MODEL, "using the tiny untrained test model; run make train or wait for the shipped model"


def sample_uploads(samples: Path = SAMPLES) -> list[tuple[str, bytes]]:
    """(key, body) for every sample file; files below samples/gzip/ are compressed here (mtime 0: same bytes each run)."""
    uploads = []
    for path in sorted(p for p in samples.rglob("*") if p.is_file() and p.suffix in (".txt", ".csv", ".jsonl")):
        rel = path.relative_to(samples).as_posix()
        body = path.read_bytes()
        if rel.startswith(f"{GZIP_SAMPLES}/"):
            rel, body = rel[len(GZIP_SAMPLES) + 1 :] + ".gz", gzip.compress(body, mtime=0)
        uploads.append((INPUT_PREFIX + rel, body))
    return uploads


def run_demo(out_dir: Path = REPO / ".demo") -> int:
    """Upload the samples to a local S3, deliver their events to the score_object handler, show the results."""
    from tqdm import tqdm

    from tweetmood.manifest import OutputManifest

    model_dir, notice = demo_model_dir()
    if notice:
        print(f"note: {notice}")
    uploads = sample_uploads()
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    log_file = out_dir / "handler.log"
    with LocalS3() as local, patched_environ(handler_environment(local.endpoint_url, model_dir)):
        s3 = local.client()
        s3.create_bucket(Bucket=DEMO_BUCKET)
        objects = []
        for key, body in uploads:
            etag = s3.put_object(Bucket=DEMO_BUCKET, Key=key, Body=body)["ETag"]
            objects.append((key, len(body), etag))
        # The first two uploads arrive in one notification, the rest one by one, as S3 may deliver them;
        # the first notification is delivered again at the end, as Lambda's at-least-once delivery may.
        events = [s3_object_created_event(DEMO_BUCKET, objects[:2])]
        events += [s3_object_created_event(DEMO_BUCKET, [obj]) for obj in objects[2:]]
        events.append(events[0])
        print(f"local S3 at {local.endpoint_url}, bucket {DEMO_BUCKET}: uploaded {len(objects)} files below {INPUT_PREFIX}")
        responses = _deliver(events, log_file, tqdm)
        manifests = _download_results(s3, out_dir)
    _print_report(manifests, out_dir, responses[-1], OutputManifest)
    print(f"\nhandler logs: {_shown(log_file)}")
    _show_report(out_dir)
    failed = [m for m in manifests if m.status != "complete"]
    return 1 if failed else 0


def _show_report(out_dir: Path) -> None:
    """End with `tweetmood report` on what was just scored, as a person would run it next."""
    from tweetmood_cli.cli import main

    here = Path.cwd()
    scored, page = (p.relative_to(here) if p.is_relative_to(here) else p for p in (out_dir / OUTPUT_PREFIX, out_dir / "report.html"))
    print(f"\n$ tweetmood report {scored}/ --html {page}")
    main(["report", f"{scored}/", "--html", str(page)])


def _shown(path: Path) -> Path:
    """A path as a person at the repo root would type it."""
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _deliver(events: list[dict], log_file: Path, tqdm) -> list[Any]:
    """Call the real handler once per event; its own logs (JSON lines, EMF metrics) go to a file."""
    responses = []
    with open(log_file, "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        handler = load_handler(HANDLER_FILE)
        print(f"delivering events to handler {HANDLER_FILE.relative_to(REPO)}", file=sys.stderr)
        for event in tqdm(events, desc="S3 events", unit="event", file=sys.stderr):
            responses.append(handler(event, FakeLambdaContext()))
    return responses


def _download_results(s3, out_dir: Path) -> list:
    from tweetmood.manifest import OutputManifest

    manifests = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=DEMO_BUCKET, Prefix=OUTPUT_PREFIX):
        for obj in page.get("Contents", []):
            target = out_dir / obj["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(DEMO_BUCKET, obj["Key"], str(target))
            if obj["Key"].endswith(".manifest.json"):
                manifests.append(OutputManifest.from_json(target.read_bytes()))
    return manifests


def _print_report(manifests: list, out_dir: Path, last_response: Any, OutputManifest) -> None:
    labels: Counter[str] = Counter()
    read = scored = rejected = 0
    seconds = 0.0
    print("\nper file:")
    for m in sorted(manifests, key=lambda m: m.source_key):
        read, scored, rejected = read + m.rows_read, scored + m.rows_scored, rejected + m.rows_rejected
        seconds += m.duration_s
        labels.update(m.label_counts)
        extra = f"  FAILED: {m.reason}" if m.reason else ""
        print(f"  {m.source_key:<45} {m.status:<9} read {m.rows_read:>3}  scored {m.rows_scored:>3}  rejected {m.rows_rejected}{extra}")
    print(f"\nrows read {read} = scored {scored} + rejected {rejected}")
    print("rows per label: " + ", ".join(f"{k} {v}" for k, v in labels.most_common()))
    print("rejected rows:")
    for m in sorted(manifests, key=lambda m: m.source_key):
        path = out_dir / m.output_key
        if not path.is_file() or m.format != "jsonl":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "error" in row:
                print(f"  [{row['error']}] {row['message']}")
    if seconds:
        print(f"throughput: {scored / seconds:,.0f} tweets/s over {seconds:.3f}s of scoring")
    if isinstance(last_response, dict):
        counts = {k: len(v) for k, v in last_response.items() if isinstance(v, list)}
        print(f"the first event, delivered again (Lambda delivers at least once): {counts}")
    rel = _shown(out_dir)
    first = next((m for m in sorted(manifests, key=lambda m: m.source_key) if m.complete), None)
    print(f"\nresults: {rel}/{OUTPUT_PREFIX}results/, manifests: {rel}/{OUTPUT_PREFIX}manifests/ (one each per input)")
    if first:
        from tweetmood.keys import manifest_key_for
        from tweetmood.settings import Settings

        manifest_key = manifest_key_for(first.source_key, Settings(input_prefix=INPUT_PREFIX, output_prefix=OUTPUT_PREFIX))
        print(f"  head '{rel}/{first.output_key}'")
        print(f"  jq -c '{{line, label, score, text}}' '{rel}/{first.output_key}'")
        print(f"  jq . '{rel}/{manifest_key}'")
