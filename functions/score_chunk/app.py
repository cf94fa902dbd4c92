"""Lambda handler for one Distributed Map item: score one chunk of a planned input, via tweetmood.scaleout."""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tweetmood.lambda_support import build_dependencies
from tweetmood.scaleout import score_chunk
from tweetmood.storage import S3Storage

logger = Logger()
metrics = Metrics()
tracer = Tracer()


@functools.cache
def _dependencies():
    """Built on the first invocation, reused while the container is warm."""
    s3, settings, classifier = build_dependencies()
    return S3Storage(s3), settings, classifier


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    """`event` is one chunk item of the plan; returns counts only {index, rows, scored, rejected}."""
    storage, settings, classifier = _dependencies()
    counts = score_chunk(storage, classifier, settings, event)
    metrics.add_metric(name="RowsScored", unit=MetricUnit.Count, value=counts["scored"])
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=counts["rejected"])
    return counts
