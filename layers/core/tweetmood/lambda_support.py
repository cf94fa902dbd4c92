"""What the Lambda handlers share: per-container dependencies and the metrics of a run summary."""

from __future__ import annotations

import boto3

from tweetmood.executions import StateMachines
from tweetmood.model_store import load_classifier
from tweetmood.settings import Settings
from tweetmood.storage import S3Storage


def build_dependencies():
    """The S3 client, settings and classifier; handlers cache the result for the container's life."""
    settings = Settings.from_env()
    return boto3.client("s3"), settings, load_classifier(settings)


def build_router_dependencies():
    """Storage, settings, classifier and (when a state machine ARN is set) the Step Functions starter,
    for the two functions that route inputs: score_object and sweep_pending."""
    s3, settings, classifier = build_dependencies()
    wanted = settings.state_machine_arn or settings.backlog_state_machine_arn
    machines = StateMachines(boto3.client("stepfunctions")) if wanted else None
    return S3Storage(s3), settings, classifier, machines


def add_summary_metrics(metrics, summary: dict) -> None:
    """Rows scored and rejected, files failed, in progress and handed to the state machine, from a summary."""
    from aws_lambda_powertools.metrics import MetricUnit

    rejected = sum(f.get("rows_rejected", 0) for f in summary["scored"] + summary["failed"])
    metrics.add_metric(name="RowsScored", unit=MetricUnit.Count, value=sum(f["rows_scored"] for f in summary["scored"]))
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=rejected)
    metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=len(summary["failed"]))
    metrics.add_metric(name="FilesInProgress", unit=MetricUnit.Count, value=len(summary["in_progress"]))
    metrics.add_metric(name="FilesScaledOut", unit=MetricUnit.Count, value=len(summary.get("started", [])))
