"""Lambda handler for the score-file machine's last states: merge a run's parts, or fail the run, via tweetmood.scaleout."""

from __future__ import annotations

import functools
import json

import boto3
from aws_lambda_powertools import Logger, Tracer

from tweetmood.scaleout import fail_run, merge_run
from tweetmood.settings import Settings
from tweetmood.storage import S3Storage

logger = Logger()
tracer = Tracer()


@functools.cache
def _dependencies():
    """Built on the first invocation, reused while the container is warm; merging needs no model."""
    return S3Storage(boto3.client("s3")), Settings.from_env()


def _error(caught: dict) -> tuple[str, str]:
    """A Catch's {Error, Cause}; a Lambda error's Cause is its JSON {errorType, errorMessage, stackTrace}: keep the message."""
    cause = caught.get("Cause") or ""
    try:
        cause = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        pass
    return caught.get("Error", "States.Unknown"), cause


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    """`event` is plan_run's run (MergeRun) or {"action": "fail", "run", "error": {Error, Cause}} (FailRun)."""
    storage, settings = _dependencies()
    if event.get("action") == "fail":
        summary = fail_run(storage, settings, event["run"], *_error(event["error"]))
    else:
        summary = merge_run(storage, settings, event)
    logger.info("run settled", extra=summary)
    return summary
