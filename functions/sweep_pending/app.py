"""Lambda handler for the schedule: score inputs that have no settled manifest, via tweetmood.service."""

from __future__ import annotations

import functools

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tweetmood.model_store import load_classifier
from tweetmood.service import sweep_pending
from tweetmood.settings import Settings

logger = Logger()
metrics = Metrics()
tracer = Tracer()


@functools.cache
def _dependencies():
    """The S3 client, settings and classifier: built on the first invocation, reused while the container is warm."""
    settings = Settings.from_env()
    return boto3.client("s3"), settings, load_classifier(settings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    s3, settings, classifier = _dependencies()
    summary = sweep_pending(
        s3=s3, settings=settings, classifier=classifier,
        remaining_ms=context.get_remaining_time_in_millis, request_id=context.aws_request_id,
    )
    metrics.add_metric(name="RowsScored", unit=MetricUnit.Count, value=sum(f["rows_scored"] for f in summary["scored"]))
    rejected = sum(f.get("rows_rejected", 0) for f in summary["scored"] + summary["failed"])
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=rejected)
    metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=len(summary["failed"]))
    metrics.add_metric(name="FilesInProgress", unit=MetricUnit.Count, value=len(summary["in_progress"]))
    # Files not reached wait for the next sweep; a count in the log shows a backlog building up.
    metrics.add_metric(name="FilesRemaining", unit=MetricUnit.Count, value=len(summary["remaining"]))
    logger.info("sweep finished", extra={k: len(v) if isinstance(v, list) else v for k, v in summary.items()})
    return summary
