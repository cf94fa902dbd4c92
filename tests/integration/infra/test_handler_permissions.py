"""The scoring handler running under its own role's S3 statements, with moto enforcing IAM.

moto checks actions and resources but cannot evaluate the s3:prefix condition of a listing, so
this covers score_object; the sweep's listing is covered by the template checks only.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import boto3
import pytest
from moto.core import enable_iam_authentication

import lambda_harness as handlers
from lambda_harness import REPO

pytestmark = pytest.mark.integration

CSV = b'id,text\n1,"so happy today, truly"\n2,"i miss my mom"\n'


def _import(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


# The template helpers live with the template tests; imported by path, once.
sam_template = _import("sam_template", REPO / "tests" / "unit" / "infra" / "sam_template.py")


@pytest.fixture
def score_object_role(lambda_env, monkeypatch):
    """Credentials of an IAM user holding exactly ScoreObjectFunction's S3 statements from template.yaml."""
    cfn = sam_template.translate(sam_template.load_sam())
    resolve = sam_template.Resolver(cfn)
    role = sam_template.role_of(cfn, "ScoreObjectFunction")
    statements = [
        {k: v for k, v in st.items() if k != "_policy"}
        for st in sam_template.role_statements(cfn, resolve, role)
        if all(a.startswith("s3:") for a in sam_template.as_list(st["Action"]))
    ]
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="score-object")
    iam.put_user_policy(
        UserName="score-object",
        PolicyName="template-statements",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    key = iam.create_access_key(UserName="score-object")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it first resolved
    return lambda_env


def test_the_role_moto_enforces_lets_the_scorer_score_an_upload(score_object_role, load_event):
    s3 = score_object_role
    event = load_event("s3_put")
    handlers.put(s3, handlers.event_keys(event)[0], CSV)
    app = handlers.load_handler("score_object")

    with enable_iam_authentication():
        summary = app.handler(event, handlers.FakeContext())

    assert [s["rows_scored"] for s in summary["scored"]] == [2]
    manifest = json.loads(handlers.read(s3, handlers.manifest_key(handlers.event_keys(event)[0])))
    assert manifest["status"] == "complete"


def test_the_role_moto_enforces_refuses_a_write_to_the_inputs(score_object_role):
    with enable_iam_authentication():
        client = boto3.client("s3", region_name="us-east-1")
        with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
            client.put_object(Bucket=handlers.EVENT_BUCKET, Key="incoming/overwritten.csv", Body=b"x")


def test_a_bad_file_gets_its_failed_manifest_under_the_role(score_object_role, load_event):
    s3 = score_object_role
    event = load_event("s3_put")
    handlers.put(s3, handlers.event_keys(event)[0], gzip.compress(b"not really a csv")[:10])
    app = handlers.load_handler("score_object")

    with enable_iam_authentication():
        summary = app.handler(event, handlers.FakeContext())

    assert len(summary["failed"]) == 1
    manifest = json.loads(handlers.read(s3, handlers.manifest_key(handlers.event_keys(event)[0])))
    assert manifest["status"] == "failed"
