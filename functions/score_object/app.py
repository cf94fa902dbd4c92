"""Lambda handler for S3 uploads and backlog items: score small inputs inline, start the state machine for big ones."""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics, Tracer

from tweetmood.lambda_support import add_summary_metrics, build_router_dependencies
from tweetmood.service import BACKLOG_ITEM, handle_s3_event

logger = Logger()
metrics = Metrics()
tracer = Tracer()


class FilesNotScored(RuntimeError):
    """Objects failed in a way another try may fix (or were not reached); raised so Lambda retries the event,
    then sends it to the on-failure destination."""


@functools.cache
def _dependencies():
    """Built on the first invocation, reused while the container is warm."""
    return build_router_dependencies()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    storage, settings, classifier, machines = _dependencies()
    summary = handle_s3_event(
        event, storage=storage, settings=settings, classifier=classifier, machines=machines,
        remaining_ms=context.get_remaining_time_in_millis, request_id=context.aws_request_id,
    )
    add_summary_metrics(metrics, summary)
    # A bad file is settled by its failed manifest; only failures another try may fix are worth a retry.
    # Files in progress are another delivery's. A backlog item is never raised: the next sweep retries it.
    unsettled = [f"{k}: not reached before the timeout" for k in summary["remaining"]]
    unsettled += [f"{f['key']}: {f['reason']}" for f in summary["failed"] if f["retryable"]]
    if unsettled and BACKLOG_ITEM not in event:
        raise FilesNotScored("retrying the event for " + "; ".join(unsettled))
    return summary
