"""Least privilege of the functions' roles, checked on template.yaml after the SAM transform."""

from __future__ import annotations

import copy

import pytest

from sam_template import (
    BUCKET,
    FUNCTIONS,
    Resolver,
    function_problems,
    function_role,
    role_statements,
    translate,
)

pytestmark = pytest.mark.unit


def _actions(statements: list[dict]) -> set[str]:
    return {a for st in statements for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}


def test_every_function_role_statement_stays_inside_its_prefixes(cfn, resolve):
    assert function_problems(cfn, resolve) == {f: [] for f in FUNCTIONS}


def test_other_prefixes_and_a_model_uri_keep_the_roles_inside_them(cfn):
    resolve = Resolver(cfn, InputPrefix="uploads/tweets/", OutputPrefix="results/", ModelUri="s3://models-bucket/tweetmood/v3/")
    assert function_problems(cfn, resolve) == {f: [] for f in FUNCTIONS}


def test_a_model_uri_grants_reads_below_that_uri_only(cfn):
    resolve = Resolver(cfn, ModelUri="s3://models-bucket/tweetmood/v3/")
    for function in FUNCTIONS:
        statements = role_statements(cfn, resolve, function_role(cfn, function))
        model = [st for st in statements if st.get("Sid") == "ReadModelFromModelUri"]
        assert model == [
            {
                "Sid": "ReadModelFromModelUri",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::models-bucket/tweetmood/v3/*",
                "_policy": model[0]["_policy"],
            }
        ]


def test_without_a_model_uri_no_statement_reaches_another_bucket(cfn, resolve):
    for function in FUNCTIONS:
        for st in role_statements(cfn, resolve, function_role(cfn, function)):
            for resource in st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]:
                assert resource.startswith(f"arn:aws:s3:::{BUCKET}") or resource == "<DeadLetterQueue.Arn>", resource


def test_the_scorer_lists_only_the_output_prefix_and_the_sweep_only_the_two_prefixes(cfn, resolve):
    """Both look manifests up by listing (a GetObject of a missing key is a 403 without a listing grant)."""
    score = role_statements(cfn, resolve, function_role(cfn, "ScoreObjectFunction"))
    sweep = role_statements(cfn, resolve, function_role(cfn, "SweepPendingFunction"))
    (listing,) = [st for st in score if st["Action"] == "s3:ListBucket"]
    assert listing["Resource"] == f"arn:aws:s3:::{BUCKET}"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "scored/*"}}
    (listing,) = [st for st in sweep if st["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["incoming/*", "scored/*"]}}


def test_both_functions_can_do_their_job(cfn, resolve):
    """The checker passing an empty policy would prove nothing: the needed grants must be there."""
    for function in FUNCTIONS:
        statements = role_statements(cfn, resolve, function_role(cfn, function))
        assert {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket", "sqs:SendMessage"} <= _actions(
            statements
        )
        resources = {r for st in statements for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])}
        assert f"arn:aws:s3:::{BUCKET}/incoming/*" in resources
        assert f"arn:aws:s3:::{BUCKET}/scored/*" in resources
        assert f"arn:aws:s3:::{BUCKET}/scored/*.manifest.json" in resources
        assert f"arn:aws:s3:::{BUCKET}/scored/*.claim" in resources


def test_no_standalone_iam_policy_can_bypass_the_role_checks(cfn):
    kinds = {r["Type"] for r in cfn["Resources"].values()}
    assert not kinds & {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::User"}
    roles = {k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert roles == {function_role(cfn, f) for f in FUNCTIONS}


BAD_STATEMENTS = {
    "a write to the input prefix": {"Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/incoming/*"},
    "a write anywhere in the bucket": {"Action": ["s3:PutObject"], "Resource": f"arn:aws:s3:::{BUCKET}/*"},
    "a write to another bucket's output prefix": {"Action": "s3:PutObject", "Resource": "arn:aws:s3:::other/scored/*"},
    "every s3 action on the outputs": {"Action": "s3:*", "Resource": f"arn:aws:s3:::{BUCKET}/scored/*"},
    "every action on everything": {"Action": "*", "Resource": "*"},
    "a Get* wildcard on the inputs": {"Action": "s3:Get*", "Resource": f"arn:aws:s3:::{BUCKET}/incoming/*"},
    "a delete on the outputs": {"Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/*"},
    "a read of the whole bucket": {"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"},
    "a read of the results themselves": {"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/*"},
    "a read of results named like a claim": {"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/*.claim*"},
    "a listing of the whole bucket by prefix": {
        "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}", "Condition": {"StringLike": {"s3:prefix": "*"}},
    },
    "a read of a sibling prefix": {"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/incoming*"},
    "an unconditional listing": {"Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
    "a bucket-policy change": {"Action": "s3:PutBucketPolicy", "Resource": f"arn:aws:s3:::{BUCKET}"},
    "sending to any queue": {"Action": "sqs:SendMessage", "Resource": "*"},
    "a NotAction grant": {"NotAction": "s3:DeleteObject", "Resource": "*"},
}


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("name", sorted(BAD_STATEMENTS))
def test_the_checker_flags_an_injected_bad_statement(sam, function, name):
    bad_sam = copy.deepcopy(sam)
    statements = bad_sam["Resources"][function]["Properties"]["Policies"][0]["Statement"]
    statements.append({"Sid": "Injected", "Effect": "Allow", **BAD_STATEMENTS[name]})
    cfn = translate(bad_sam)
    problems = function_problems(cfn, Resolver(cfn))
    assert problems[function], f"{name} went unnoticed"
    assert all("/Injected:" in p for p in problems[function]), problems[function]
    assert all(not found for other, found in problems.items() if other != function)


def test_the_checker_flags_an_extra_managed_policy(sam):
    bad_sam = copy.deepcopy(sam)
    bad_sam["Resources"]["SweepPendingFunction"]["Properties"]["Policies"].append("AmazonS3FullAccess")
    cfn = translate(bad_sam)
    problems = function_problems(cfn, Resolver(cfn))
    assert any("AmazonS3FullAccess" in p for p in problems["SweepPendingFunction"])
