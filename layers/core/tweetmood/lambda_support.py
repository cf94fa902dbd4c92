"""What both Lambda handlers share: per-container dependencies and the metrics of a run summary."""

from __future__ import annotations

import boto3

from tweetmood.model_store import load_classifier
from tweetmood.settings import Settings


def build_dependencies():
    """The S3 client, settings and classifier; handlers cache the result for the container's life."""
    settings = Settings.from_env()
    return boto3.client("s3"), settings, load_classifier(settings)


def add_summary_metrics(metrics, summary: dict) -> None:
    """Rows scored and rejected, files failed and in progress, from a handle_s3_event/sweep_pending summary."""
    from aws_lambda_powertools.metrics import MetricUnit

    rejected = sum(f.get("rows_rejected", 0) for f in summary["scored"] + summary["failed"])
    metrics.add_metric(name="RowsScored", unit=MetricUnit.Count, value=sum(f["rows_scored"] for f in summary["scored"]))
    metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=rejected)
    metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=len(summary["failed"]))
    metrics.add_metric(name="FilesInProgress", unit=MetricUnit.Count, value=len(summary["in_progress"]))
