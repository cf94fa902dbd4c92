"""Least privilege of the functions' and state machines' roles, checked on template.yaml after the SAM transform."""

from __future__ import annotations

import copy

import pytest

from sam_template import (
    ALL_FUNCTIONS,
    BUCKET,
    FUNCTIONS,
    STATE_MACHINES,
    Resolver,
    role_of,
    role_problems,
    role_statements,
    translate,
)

ROLES = ALL_FUNCTIONS + STATE_MACHINES
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:tweetmood-{}"

pytestmark = pytest.mark.unit


def _actions(statements: list[dict]) -> set[str]:
    return {a for st in statements for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}


def test_every_role_statement_stays_inside_what_its_job_needs(cfn, resolve):
    assert role_problems(cfn, resolve) == {r: [] for r in ROLES}


def test_other_prefixes_and_a_model_uri_keep_the_roles_inside_them(cfn):
    resolve = Resolver(cfn, InputPrefix="uploads/tweets/", OutputPrefix="results/", ModelUri="s3://models-bucket/tweetmood/v3/")
    assert role_problems(cfn, resolve) == {r: [] for r in ROLES}


def test_a_model_uri_grants_reads_below_that_uri_only_to_the_functions_that_score(cfn):
    resolve = Resolver(cfn, ModelUri="s3://models-bucket/tweetmood/v3/")
    for function in ("PlanRunFunction", "MergeRunFunction"):
        assert not [st for st in role_statements(cfn, resolve, role_of(cfn, function)) if "models-bucket" in str(st)]
    for function in (*FUNCTIONS, "ScoreChunkFunction"):
        statements = role_statements(cfn, resolve, role_of(cfn, function))
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


def test_without_a_model_uri_no_function_statement_reaches_another_bucket(cfn, resolve):
    for function in ALL_FUNCTIONS:
        for st in role_statements(cfn, resolve, role_of(cfn, function)):
            for resource in st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]:
                assert resource.startswith((f"arn:aws:s3:::{BUCKET}", MACHINE.format(""))) or resource == "<DeadLetterQueue.Arn>", resource


def test_the_scorer_lists_only_the_output_prefix_and_the_sweep_only_the_two_prefixes(cfn, resolve):
    """Both look manifests up by listing (a GetObject of a missing key is a 403 without a listing grant)."""
    score = role_statements(cfn, resolve, role_of(cfn, "ScoreObjectFunction"))
    sweep = role_statements(cfn, resolve, role_of(cfn, "SweepPendingFunction"))
    (listing,) = [st for st in score if st["Action"] == "s3:ListBucket"]
    assert listing["Resource"] == f"arn:aws:s3:::{BUCKET}"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "scored/*"}}
    (listing,) = [st for st in sweep if st["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["incoming/*", "scored/*"]}}


def test_both_functions_can_do_their_job(cfn, resolve):
    """The checker passing an empty policy would prove nothing: the needed grants must be there."""
    for function in FUNCTIONS:
        statements = role_statements(cfn, resolve, role_of(cfn, function))
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
    assert roles == {role_of(cfn, r) for r in ROLES}
    assert len(roles) == len(ROLES), "each function and machine has a role of its own"


def _grants(cfn, resolve, logical_id: str) -> dict[str, set[str]]:
    """Action -> resources of a role's statements (what the role can do, for the can-do-its-job tests)."""
    found: dict[str, set[str]] = {}
    for st in role_statements(cfn, resolve, role_of(cfn, logical_id)):
        for action in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
            found.setdefault(action, set()).update(st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])
    return found


def test_the_scale_out_functions_can_do_their_job_and_nothing_more(cfn, resolve):
    objects = f"arn:aws:s3:::{BUCKET}/"
    assert _grants(cfn, resolve, "PlanRunFunction") == {
        "s3:GetObject": {objects + "incoming/*"},
        "s3:PutObject": {objects + "scored/staging/*"},
        "s3:AbortMultipartUpload": {objects + "scored/staging/*"},
    }
    chunk_writes = {objects + "scored/staging/*/parts/*", objects + "scored/staging/*/counts/*"}
    assert _grants(cfn, resolve, "ScoreChunkFunction") == {
        "s3:GetObject": {objects + "incoming/*", objects + "scored/staging/*/source/*"},
        "s3:PutObject": chunk_writes,
        "s3:AbortMultipartUpload": chunk_writes,
    }
    merge_writes = {objects + "scored/results/*", objects + "scored/manifests/*"}
    assert _grants(cfn, resolve, "MergeRunFunction") == {
        "s3:GetObject": {objects + "scored/staging/*", objects + "scored/manifests/*"},
        "s3:ListBucket": {f"arn:aws:s3:::{BUCKET}"},
        "s3:DeleteObject": {objects + "scored/staging/*", objects + "scored/results/*"},
        "s3:PutObject": merge_writes,
        "s3:AbortMultipartUpload": merge_writes,
    }


def test_only_the_merge_deletes_and_only_staging_and_results(cfn, resolve):
    deleting = {r: g["s3:DeleteObject"] for r in ROLES if "s3:DeleteObject" in (g := _grants(cfn, resolve, r))}
    assert deleting == {"MergeRunFunction": {f"arn:aws:s3:::{BUCKET}/scored/staging/*", f"arn:aws:s3:::{BUCKET}/scored/results/*"}}


def test_the_machines_invoke_their_own_functions_read_their_lists_and_run_only_their_own_children(cfn, resolve):
    logs = {"logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"}
    for machine, name, functions, reads in (
        ("ScoreFileStateMachine", "score-file", {"<PlanRunFunction.Arn>", "<ScoreChunkFunction.Arn>", "<MergeRunFunction.Arn>"},
         f"arn:aws:s3:::{BUCKET}/scored/staging/*/plan.json"),
        ("BacklogStateMachine", "backlog", {"<ScoreObjectFunction.Arn>"}, f"arn:aws:s3:::{BUCKET}/scored/staging/backlog-*.json"),
    ):
        grants = _grants(cfn, resolve, machine)
        children = MACHINE.format(name).replace(":stateMachine:", ":execution:") + "/*"
        assert grants == {
            "lambda:InvokeFunction": functions,
            "s3:GetObject": {reads},
            "states:StartExecution": {MACHINE.format(name)},
            "states:DescribeExecution": {children},
            "states:StopExecution": {children},
            **{action: {"*"} for action in logs},
        }, machine
        assert role_of(cfn, machine) and cfn["Resources"][role_of(cfn, machine)]["Properties"]["ManagedPolicyArns"] == [
            "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
        ]


def test_the_scorer_starts_only_the_score_file_machine_and_the_sweep_both(cfn, resolve):
    assert _grants(cfn, resolve, "ScoreObjectFunction")["states:StartExecution"] == {MACHINE.format("score-file")}
    assert _grants(cfn, resolve, "SweepPendingFunction")["states:StartExecution"] == {
        MACHINE.format("score-file"), MACHINE.format("backlog"),
    }


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


# What one role may do is not a licence for another: each is injected into roles that must not have it.
BAD_FOR_SOME = {
    "a delete of staging outside the merge": (
        {"Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/staging/*"},
        ("ScoreObjectFunction", "PlanRunFunction", "ScoreChunkFunction", "ScoreFileStateMachine"),
    ),
    "a delete of manifests by the merge": (
        {"Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/manifests/*"}, ("MergeRunFunction",),
    ),
    "a plan reading staging": ({"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/staging/*"}, ("PlanRunFunction",)),
    "a chunk writing results directly": (
        {"Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/results/*"}, ("ScoreChunkFunction", "PlanRunFunction"),
    ),
    "a chunk writing the plan": (
        {"Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/staging/*"}, ("ScoreChunkFunction",),
    ),
    "a chunk reading other chunks' parts": (
        {"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/staging/*"}, ("ScoreChunkFunction",),
    ),
    "the merge reading inputs": ({"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/incoming/*"}, ("MergeRunFunction",)),
    "a machine writing to the bucket": (
        {"Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/staging/*"}, STATE_MACHINES,
    ),
    "a machine reading every staging object": (
        {"Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/scored/staging/*"}, STATE_MACHINES,
    ),
    "invoking any function": ({"Action": "lambda:InvokeFunction", "Resource": "*"}, STATE_MACHINES),
    "starting any state machine": ({"Action": "states:StartExecution", "Resource": "*"}, ROLES),
    "starting the backlog from the scorer": (
        {"Action": "states:StartExecution", "Resource": MACHINE.format("backlog")}, ("ScoreObjectFunction", "ScoreFileStateMachine"),
    ),
    "log delivery from a function": ({"Action": "logs:CreateLogDelivery", "Resource": "*"}, ALL_FUNCTIONS),
    "a listing of the inputs by the merge": (
        {"Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}", "Condition": {"StringLike": {"s3:prefix": "incoming/*"}}},
        ("MergeRunFunction", "ScoreObjectFunction"),
    ),
}
INJECTIONS = [(role, name, BAD_STATEMENTS[name]) for role in ROLES for name in sorted(BAD_STATEMENTS)] + [
    (role, name, statement) for name, (statement, roles) in sorted(BAD_FOR_SOME.items()) for role in roles
]


@pytest.mark.parametrize(("role", "name", "statement"), INJECTIONS, ids=[f"{r}-{n}" for r, n, _ in INJECTIONS])
def test_the_checker_flags_an_injected_bad_statement(cfn, role, name, statement):
    """Injected into the translated role (one SAM transform per case would take minutes); the transform's own
    handling of inline statements is covered by the managed-policy case below."""
    cfn = copy.deepcopy(cfn)
    policy = cfn["Resources"][role_of(cfn, role)]["Properties"]["Policies"][0]["PolicyDocument"]
    policy["Statement"] = [*policy["Statement"], {"Sid": "Injected", "Effect": "Allow", **statement}]
    problems = role_problems(cfn, Resolver(cfn))
    assert problems[role], f"{name} went unnoticed in {role}"
    assert all("/Injected:" in p for p in problems[role]), problems[role]
    assert all(not found for other, found in problems.items() if other != role)


def test_a_bad_statement_written_in_the_sam_template_is_flagged_after_the_transform(sam):
    bad_sam = copy.deepcopy(sam)
    statements = bad_sam["Resources"]["ScoreChunkFunction"]["Properties"]["Policies"][0]["Statement"]
    statements.append({"Sid": "Injected", "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"})
    cfn = translate(bad_sam)
    problems = role_problems(cfn, Resolver(cfn))
    assert problems["ScoreChunkFunction"] and all("/Injected:" in p for p in problems["ScoreChunkFunction"])


def test_the_checker_flags_an_extra_managed_policy(sam):
    bad_sam = copy.deepcopy(sam)
    bad_sam["Resources"]["SweepPendingFunction"]["Properties"]["Policies"].append("AmazonS3FullAccess")
    cfn = translate(bad_sam)
    problems = role_problems(cfn, Resolver(cfn))
    assert any("AmazonS3FullAccess" in p for p in problems["SweepPendingFunction"])
