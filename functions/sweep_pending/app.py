"""Lambda handler for the schedule: score (or hand on) inputs that have no settled manifest, via tweetmood.service."""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from tweetmood.lambda_support import add_summary_metrics, build_router_dependencies
from tweetmood.service import sweep_pending

logger = Logger()
metrics = Metrics()
tracer = Tracer()


@functools.cache
def _dependencies():
    """Built on the first invocation, reused while the container is warm."""
    return build_router_dependencies()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    storage, settings, classifier, machines = _dependencies()
    summary = sweep_pending(
        storage=storage, settings=settings, classifier=classifier, machines=machines,
        remaining_ms=context.get_remaining_time_in_millis, request_id=context.aws_request_id,
    )
    add_summary_metrics(metrics, summary)
    # Files not reached wait for the next sweep; a count in the log shows a backlog building up.
    metrics.add_metric(name="FilesRemaining", unit=MetricUnit.Count, value=len(summary["remaining"]))
    logger.info("sweep finished", extra={k: len(v) if isinstance(v, list) else v for k, v in summary.items()})
    return summary
