"""The handlers running under their own roles' S3 statements, with moto enforcing IAM.

moto checks actions and resources but cannot evaluate the s3:prefix condition of a listing, so
the listings are covered by the template checks only.
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


def role_credentials(function: str) -> dict:
    """Access keys of a new IAM user holding exactly `function`'s S3 statements from template.yaml
    (created before moto starts enforcing IAM)."""
    cfn = sam_template.translate(sam_template.load_sam())
    resolve = sam_template.Resolver(cfn)
    role = sam_template.role_of(cfn, function)
    statements = [
        {k: v for k, v in st.items() if k != "_policy"}
        for st in sam_template.role_statements(cfn, resolve, role)
        if all(a.startswith("s3:") for a in sam_template.as_list(st["Action"]))
    ]
    if any("s3:DeleteObject" in sam_template.as_list(st["Action"]) for st in statements):
        # moto authorizes a multi-object delete (DeleteObjects) as s3:DeleteObject on the bucket itself; AWS
        # authorizes each key, as the template grants it. This stand-in only gets the request past moto; which
        # keys a role may delete is checked on the template (tests/unit/infra).
        statements.append({"Sid": "MotoMultiObjectDelete", "Effect": "Allow", "Action": "s3:DeleteObject",
                           "Resource": f"arn:aws:s3:::{handlers.EVENT_BUCKET}"})
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName=function)
    iam.put_user_policy(
        UserName=function,
        PolicyName="template-statements",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    return iam.create_access_key(UserName=function)["AccessKey"]


def act_as(credentials: dict, monkeypatch) -> None:
    """From now on, new boto3 clients hold `credentials` (the handlers build their client on their first call)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it first resolved


@pytest.fixture
def score_object_role(lambda_env, monkeypatch):
    """Credentials of an IAM user holding exactly ScoreObjectFunction's S3 statements from template.yaml."""
    act_as(role_credentials("ScoreObjectFunction"), monkeypatch)
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


def test_each_scale_out_role_moto_enforces_lets_its_step_of_a_gz_run_through(lambda_env, monkeypatch):
    """Plan inflates the .gz to staging, each chunk reads its range of that copy, the merge joins the parts:
    each step under its own function's statements, so a grant one of them lacks fails here."""
    s3 = lambda_env
    monkeypatch.setenv("CHUNK_ROWS", "16")
    monkeypatch.setenv("BATCH_SIZE", "1")
    key = "incoming/2026/big.txt.gz"
    etag = handlers.put(s3, key, gzip.compress(b"".join(b"so happy today #%d\n" % i for i in range(50))))
    execution_input = {"bucket": handlers.EVENT_BUCKET, "key": key, "etag": etag, "version_id": None, "run_id": "run-1"}
    plan, chunk, merge = (handlers.load_handler(f) for f in ("plan_run", "score_chunk", "merge_run"))
    roles = {f: role_credentials(f) for f in ("PlanRunFunction", "ScoreChunkFunction", "MergeRunFunction")}

    with enable_iam_authentication():
        act_as(roles["PlanRunFunction"], monkeypatch)
        run = plan.handler(execution_input, handlers.FakeContext())
    items = json.loads(handlers.read(s3, run["plan_key"]))  # what the map's ItemReader reads, as the machine
    with enable_iam_authentication():
        act_as(roles["ScoreChunkFunction"], monkeypatch)
        counts = [chunk.handler(item, handlers.FakeContext()) for item in items]
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            boto3.client("s3", region_name="us-east-1").get_object(Bucket=handlers.EVENT_BUCKET, Key=run["plan_key"])
        act_as(roles["MergeRunFunction"], monkeypatch)
        summary = merge.handler(run, handlers.FakeContext())

    assert len(items) >= 3 and all(item["decompressed"] for item in items)
    assert sum(c["rows"] for c in counts) == 50
    assert summary["status"] == "complete" and summary["rows_scored"] == 50
    assert len(handlers.read(s3, summary["output_key"]).splitlines()) == 50


def test_the_merge_role_moto_enforces_lets_a_failed_run_replace_an_older_result(lambda_env, monkeypatch, load_event):
    s3 = lambda_env
    event = load_event("fail_run")
    stale = handlers.result_key(event["run"]["key"])
    handlers.put(s3, stale, b'{"line": 1, "text": "scored from an older upload"}\n')
    merge = handlers.load_handler("merge_run")
    credentials = role_credentials("MergeRunFunction")

    with enable_iam_authentication():
        act_as(credentials, monkeypatch)
        summary = merge.handler(event, handlers.FakeContext())

    assert json.loads(handlers.read(s3, summary["manifest_key"]))["status"] == "failed"
    assert s3.list_objects_v2(Bucket=handlers.EVENT_BUCKET, Prefix=stale)["KeyCount"] == 0
