"""The SageMaker launcher: the CreateTrainingJob request (checked against moto), the source tarball, --dry-run."""

from __future__ import annotations

import argparse
import json
import tarfile

import boto3
import pytest
from moto import mock_aws

from training.__main__ import main
from training.sagemaker import (ENTRY_POINT, LaunchError, add_arguments, build_request, hyperparameters_from_args,
                                launch, package_source)

pytestmark = pytest.mark.unit

ROLE = "arn:aws:iam::123456789012:role/tweetmood-sagemaker"
ARGS = ["--role", ROLE, "--data-s3-uri", "s3://data/emotion/", "--output-s3-uri", "s3://out/jobs/",
        "--job-name", "tweetmood-train-test", "--", "--epochs", "3", "--lr=1e-4", "--bf16"]


@pytest.fixture
def aws(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="out")
        yield s3, boto3.client("sagemaker", region_name="us-east-1")


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_training_options_become_hyperparameters():
    assert hyperparameters_from_args(["--epochs", "3", "--lr=1e-4", "--bf16"], "transformer") == {
        "command": "transformer", "epochs": "3", "lr": "1e-4", "bf16": "true"}
    with pytest.raises(LaunchError, match="set by SageMaker"):
        hyperparameters_from_args(["--data-dir", "x"])


def test_the_job_is_created_with_the_source_data_output_and_gpu_instance(aws):
    s3, sagemaker = aws
    result = launch(_parse(ARGS), s3_client=s3, sagemaker_client=sagemaker, out=lambda _: None)
    job = sagemaker.describe_training_job(TrainingJobName="tweetmood-train-test")
    assert job["TrainingJobArn"] == result["arn"]
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert job["RoleArn"] == ROLE
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://data/emotion/"
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://out/jobs/"
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 4 * 3600
    hp = {k: json.loads(v) for k, v in job["HyperParameters"].items()}
    assert hp["sagemaker_program"] == ENTRY_POINT
    assert hp["sagemaker_submit_directory"] == "s3://out/jobs/source/tweetmood-train-test/sourcedir.tar.gz"
    assert (hp["command"], hp["epochs"], hp["lr"], hp["bf16"]) == ("all", "3", "1e-4", "true")
    assert s3.head_object(Bucket="out", Key="jobs/source/tweetmood-train-test/sourcedir.tar.gz")["ContentLength"] > 0


def test_dry_run_prints_the_request_and_submits_nothing(aws, capsys):
    s3, sagemaker = aws
    assert main(["sagemaker", "--dry-run", *ARGS]) == 0
    request = json.loads(capsys.readouterr().out)
    assert request["TrainingJobName"] == "tweetmood-train-test"
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("-sagemaker")
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
    assert "Contents" not in s3.list_objects_v2(Bucket="out")


def test_the_source_tarball_holds_the_training_code_the_core_and_the_entry_point(tmp_path):
    with tarfile.open(package_source(tmp_path / "sourcedir.tar.gz")) as tar:
        names = set(tar.getnames())
        entry = tar.extractfile(ENTRY_POINT).read().decode()
    assert {"training/__main__.py", "training/export.py", "tweetmood/classifier.py", "requirements.txt"} <= names
    assert not any("__pycache__" in n for n in names)
    assert "SM_CHANNEL_TRAIN" in entry and "SM_MODEL_DIR" in entry


def test_a_role_that_is_not_an_arn_is_refused_before_anything_is_sent():
    ns = _parse([*ARGS[:1], "my-role", *ARGS[2:]])
    with pytest.raises(LaunchError, match="not an ARN"):
        launch(ns, out=lambda _: None)
