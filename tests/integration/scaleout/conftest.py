"""Fixtures for the state machine tests: moto executing the real definitions, its Lambda invoke calling the real handlers."""

from __future__ import annotations

import json

import boto3
import pytest

from machine_harness import (
    ACCOUNT, BATCH_SIZE, BUCKET, CHUNK_ROWS, FUNCTIONS, MACHINES, REGION, REPO, Lambdas, Stack, function_arn, import_path, machine_arn, render,
)


@pytest.fixture
def stack(monkeypatch, aws_credentials, tiny_model_dir):
    """moto with state machine execution on: the bucket, both machines from the real definitions, real handlers.

    Yields a namespace with the S3 and Step Functions clients, the `Lambdas` double and the handlers' Settings.
    """
    from moto import mock_aws
    from moto.awslambda_simple.models import LambdaSimpleBackend

    from tweetmood import model_store
    from tweetmood.settings import Settings

    env = {
        "INPUT_PREFIX": "incoming/",
        "OUTPUT_PREFIX": "scored/",
        "MODEL_DIR": str(tiny_model_dir),
        "MODEL_URI": "",
        "BUCKET_NAME": BUCKET,
        "POWERTOOLS_SERVICE_NAME": "tweetmood",
        "POWERTOOLS_METRICS_NAMESPACE": "tweetmood",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
        "CHUNK_ROWS": str(CHUNK_ROWS),
        "BATCH_SIZE": str(BATCH_SIZE),
        "INLINE_MAX_BYTES": "2048",
        "STATE_MACHINE_ARN": machine_arn("ScoreFileStateMachine"),
        "BACKLOG_STATE_MACHINE_ARN": machine_arn("BacklogStateMachine"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    model_store.clear_cache()
    lambdas = Lambdas()
    # With use_docker False, moto serves Lambda from LambdaSimpleBackend, whose invoke only echoes the payload.
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", lambda backend, *a: lambdas.invoke(backend, *a))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        s3 = boto3.client("s3", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for logical_id, name in MACHINES.items():
            values = render.stand_in_values(logical_id)
            values.update({k: function_arn(k.removesuffix("Arn")) for k in values if k.endswith("Arn")})
            sfn.create_state_machine(
                name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", type="STANDARD",
                definition=json.dumps(render.render(logical_id, values)),
            )
        lambdas.handlers = {f: import_path(f"{f}_app", REPO / "functions" / f / "app.py").handler for f in FUNCTIONS.values()}
        yield Stack(s3=s3, sfn=sfn, lambdas=lambdas, settings=Settings.from_env())
    model_store.clear_cache()


