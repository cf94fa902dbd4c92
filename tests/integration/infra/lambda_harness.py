"""What the handler tests share: a fake Lambda context, the handler loader and S3/metric helpers."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

REPO = Path(__file__).resolve().parents[3]
EVENT_BUCKET = "tweetmood-123456789012-us-east-1"  # the bucket the events/ files name


@dataclass
class FakeContext:
    """The parts of a Lambda context the handlers and Powertools read."""

    remaining_ms: int = 600_000
    function_name: str = "tweetmood-ScoreObjectFunction"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tweetmood-ScoreObjectFunction"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_handler(function: str):
    """functions/<function>/app.py as a fresh module (both files are called app.py)."""
    spec = importlib.util.spec_from_file_location(f"{function}_app", REPO / "functions" / function / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result_key(key: str) -> str:
    """Where the functions write the result of input `key`, from the key functions and their environment."""
    from tweetmood import keys
    from tweetmood.settings import Settings

    return keys.output_key_for(key, Settings.from_env())


def manifest_key(key: str) -> str:
    """Where the functions write the manifest of input `key`."""
    from tweetmood import keys
    from tweetmood.settings import Settings

    return keys.manifest_key_for(key, Settings.from_env())


def put(s3, key: str, body: bytes) -> str:
    return s3.put_object(Bucket=EVENT_BUCKET, Key=key, Body=body)["ETag"].strip('"')


def read(s3, key: str) -> bytes:
    return s3.get_object(Bucket=EVENT_BUCKET, Key=key)["Body"].read()


def event_keys(event: dict) -> list[str]:
    return [unquote_plus(r["s3"]["object"]["key"]) for r in event["Records"]]


def emitted_metrics(stdout: str) -> dict[str, float]:
    """Metric name -> value from the CloudWatch embedded-metric lines Powertools prints."""
    found = {}
    for line in stdout.splitlines():
        if '"_aws"' in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    found[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return found
