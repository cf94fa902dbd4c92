"""Lambda handler for the score-file machine's first state: plan one big input's chunks, via tweetmood.scaleout."""

from __future__ import annotations

import functools

import boto3
from aws_lambda_powertools import Logger, Tracer

from tweetmood.scaleout import plan_run
from tweetmood.settings import Settings
from tweetmood.storage import S3Storage

logger = Logger()
tracer = Tracer()


@functools.cache
def _dependencies():
    """Built on the first invocation, reused while the container is warm; planning needs no model."""
    return S3Storage(boto3.client("s3")), Settings.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    """`event` is the execution input {bucket, key, etag, version_id, run_id}; returns the run for the map and merge."""
    storage, settings = _dependencies()
    run = plan_run(storage, settings, bucket=event["bucket"], key=event["key"], etag=event["etag"], run_id=event["run_id"])
    logger.info("planned", extra=run)
    return run
