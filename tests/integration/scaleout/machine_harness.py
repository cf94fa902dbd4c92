"""What the state machine tests share: the real definitions rendered for moto, the handlers behind its Lambda invoke."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


REPO = Path(__file__).resolve().parents[3]
BUCKET = "tweetmood-123456789012-us-east-1"
ACCOUNT, REGION = "123456789012", "us-east-1"
# The functions as template.yaml names them in DefinitionSubstitutions, and the handler folder of each.
FUNCTIONS = {
    "PlanRunFunction": "plan_run",
    "ScoreChunkFunction": "score_chunk",
    "MergeRunFunction": "merge_run",
    "ScoreObjectFunction": "score_object",
}
MACHINES = {"ScoreFileStateMachine": "tweetmood-score-file", "BacklogStateMachine": "tweetmood-backlog"}
# The plan cuts only where a serial run starts a batching window (BATCH_SIZE x 16 records), so that the model
# sees the same batches; one-tweet batches and 16-row chunks make a couple of hundred rows well over 8 chunks.
BATCH_SIZE = 1
CHUNK_ROWS = 16
# An execution that has not settled by then is reported as a failure, not waited on forever.
SETTLE_DEADLINE_S = 300


def import_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = import_path("render", REPO / "statemachine" / "render.py")


def function_arn(logical_id: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:tweetmood-{FUNCTIONS[logical_id].replace('_', '-')}"


def machine_arn(logical_id: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{MACHINES[logical_id]}"


@dataclass
class FakeContext:
    """The parts of a Lambda context the handlers and Powertools read."""

    function_name: str
    remaining_ms: int = 600_000
    memory_limit_in_mb: int = 1769
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Lambdas:
    """The real handlers behind moto's Lambda invoke, with a hook to make one call fail and a log of calls."""

    handlers: dict[str, Callable] = field(default_factory=dict)
    calls: list[tuple[str, dict]] = field(default_factory=list)
    fail_when: Callable[[str, dict], bool] = lambda function, event: False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, backend, function_name, qualifier, body, headers, response_headers):
        name = function_name.rsplit(":", 1)[-1]
        folder = next(f for f in FUNCTIONS.values() if name == f"tweetmood-{f.replace('_', '-')}")
        event = json.loads(body) if body else {}
        with self.lock:
            self.calls.append((folder, event))
        try:
            if self.fail_when(folder, event):
                raise RuntimeError(f"injected failure in {folder}")
            result = self.handlers[folder](event, FakeContext(function_name=name))
        except Exception as exc:  # what Lambda does with an unhandled exception: a function error, not a crash
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({
                "errorType": type(exc).__name__, "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-3:],
            }).encode("utf-8")
        return json.dumps(result).encode("utf-8")


@dataclass
class Stack:
    """moto's S3 and Step Functions clients, the Lambda double and the handlers' Settings, with a few helpers."""

    s3: object
    sfn: object
    lambdas: Lambdas
    settings: object

    def put(self, key: str, body: bytes) -> str:
        return self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def keys_below(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def settle(self, machine: str) -> list[dict]:
        """Every execution of `machine` once none is running (child executions of a Distributed Map excluded)."""
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        while True:
            executions = self.sfn.list_executions(stateMachineArn=machine_arn(machine))["executions"]
            if executions and all(e["status"] != "RUNNING" for e in executions):
                return [self.sfn.describe_execution(executionArn=e["executionArn"]) for e in executions]
            assert time.monotonic() < deadline, f"{machine} executions still running: {executions}"
            time.sleep(0.2)
