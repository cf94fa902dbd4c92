"""template.yaml as CloudFormation: translated by samtranslator, intrinsics resolved, IAM statements checked."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "template.yaml"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "tweetmood",
    "AWS::URLSuffix": "amazonaws.com",
}
BUCKET = "tweetmood-123456789012-us-east-1"
# The functions that score from events and the schedule, and the three the score-file machine runs.
FUNCTIONS = ("ScoreObjectFunction", "SweepPendingFunction")
SCALE_OUT_FUNCTIONS = ("PlanRunFunction", "ScoreChunkFunction", "MergeRunFunction")
ALL_FUNCTIONS = FUNCTIONS + SCALE_OUT_FUNCTIONS
STATE_MACHINES = ("ScoreFileStateMachine", "BacklogStateMachine")
DLQ_ARN = "<DeadLetterQueue.Arn>"
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
S3_WRITES = {"s3:PutObject", "s3:AbortMultipartUpload"}
# CloudWatch Logs vended delivery (state machine logging) takes no resource-level permissions: "*" only.
LOG_DELIVERY = {
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
}

_NO_VALUE = object()


def load_sam(path: Path = TEMPLATE) -> dict:
    """The SAM template as a dict, short-form tags (!Ref, !Sub …) expanded."""
    return yaml_parse(path.read_text(encoding="utf-8"))


def translate(sam: dict) -> dict:
    """CloudFormation for `sam`, as the SAM transform would produce it (local code paths stand in as S3)."""
    sam = copy.deepcopy(sam)
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                props[key] = "s3://artifacts/code.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=PSEUDO["AWS::Region"]))
    return translator.translate(sam, parameter_values={}, get_managed_policy_map=lambda: {})


class Resolver:
    """Evaluates the intrinsics the template uses, for given parameter values (defaults otherwise).

    A resource reference resolves to a placeholder: `<Logical>` for Ref, `<Logical.Attr>` for GetAtt.
    """

    def __init__(self, cfn: dict, **overrides: str) -> None:
        self.cfn = cfn
        self.params = {name: str(p.get("Default", "")) for name, p in cfn.get("Parameters", {}).items()}
        unknown = set(overrides) - set(self.params)
        assert not unknown, f"no such parameters: {unknown}"
        self.params.update(overrides)
        self.conditions = {name: self(expr) for name, expr in cfn.get("Conditions", {}).items()}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        return f"<{name}>"

    def _sub(self, text: str, local: dict) -> str:
        def one(match: re.Match) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if "." in name and name.split(".")[0] not in PSEUDO:
                return f"<{name}>"
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self(x) for x in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return self._ref(arg)
            if fn == "Fn::GetAtt":
                return "<{}>".format(".".join(arg) if isinstance(arg, list) else arg)
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self(v) for k, v in arg[1].items()})
                return self._sub(text, local)
            if fn == "Fn::Join":
                return self(arg[0]).join(self(arg[1]))
            if fn == "Fn::Split":
                return self(arg[1]).split(self(arg[0]))
            if fn == "Fn::Select":
                return self(arg[1])[int(self(arg[0]))]
            if fn == "Fn::If":
                return self(arg[1] if self.conditions[arg[0]] else arg[2])
            if fn == "Fn::Equals":
                return self(arg[0]) == self(arg[1])
            if fn == "Fn::Not":
                return not self(arg[0])
            if fn == "Fn::And":
                return all(self(a) for a in arg)
            if fn == "Fn::Or":
                return any(self(a) for a in arg)
            if fn == "Fn::Contains":
                return self(arg[1]) in self(arg[0])
            if fn == "Condition":
                return self.conditions[arg]
        return {k: v for k, v in ((k, self(v)) for k, v in node.items()) if v is not _NO_VALUE}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def role_of(cfn: dict, logical_id: str) -> str:
    """The logical id of the IAM role a function (Role) or state machine (RoleArn) runs as."""
    props = cfn["Resources"][logical_id]["Properties"]
    role = props.get("Role") or props.get("RoleArn")
    assert "Fn::GetAtt" in role, f"{logical_id} uses an externally defined role {role}: it cannot be checked here"
    return role["Fn::GetAtt"][0]


def role_statements(cfn: dict, resolve: Resolver, role: str) -> list[dict]:
    """Every inline policy statement of `role`, resolved, each tagged with its policy name."""
    statements = []
    for policy in cfn["Resources"][role]["Properties"].get("Policies", []):
        document = resolve(policy["PolicyDocument"])
        for statement in as_list(document["Statement"]):
            statements.append({**statement, "_policy": policy["PolicyName"]})
    return statements


@dataclass(frozen=True)
class Grants:
    """What one role may do, as resource patterns; a statement is fine when each resource it names lies inside one.

    "Inside" is glob matching of the granted ARN, read literally, against the pattern: `.../staging/*/parts/*`
    lies inside `.../staging/*`, while `.../scored/*.claim*` does not lie inside `.../scored/*.claim`.
    """

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()
    list_prefixes: tuple[str, ...] = ()
    starts: tuple[str, ...] = ()
    watches: tuple[str, ...] = ()
    invokes: tuple[str, ...] = ()
    dead_letters: tuple[str, ...] = ()
    delivers_logs: bool = False


def _inside(resource: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(resource, p) for p in patterns)


def expected_grants(resolve: Resolver, bucket: str) -> dict[str, Grants]:
    """Least privilege of every role in the template, stated from the scoring contract (not read from it).

    Events and schedule: read inputs, manifests and claims; write below the output prefix; start the machines.
    PlanRun: read inputs, write staging. ScoreChunk: read inputs and inflated sources, write parts and counts.
    MergeRun: read, list and delete staging; read and list manifests; write results and manifests; delete a
    stale result when a run fails. The machines: invoke their own
    functions, read their plan or backlog lists, run and watch their own child executions, deliver logs.
    """
    p = resolve.params
    model_uri = p["ModelUri"]
    model = (f"arn:aws:s3:::{model_uri.removeprefix('s3://')}*",) if model_uri else ()
    objects, out = f"arn:aws:s3:::{bucket}/", p["OutputPrefix"]
    inputs, staging = objects + p["InputPrefix"] + "*", objects + out + "staging/*"
    control = (objects + out + "*.manifest.json", objects + out + "*.claim")
    machine = "arn:aws:states:{}:{}:stateMachine:{}-{{}}".format(PSEUDO["AWS::Region"], PSEUDO["AWS::AccountId"], PSEUDO["AWS::StackName"])
    children = machine.replace(":stateMachine:", ":execution:") + "/*"
    return {
        "ScoreObjectFunction": Grants(
            reads=(inputs, *control, *model), writes=(objects + out + "*",), list_prefixes=(out + "*",),
            starts=(machine.format("score-file"),), dead_letters=(DLQ_ARN,),
        ),
        "SweepPendingFunction": Grants(
            reads=(inputs, *control, *model), writes=(objects + out + "*",), list_prefixes=(p["InputPrefix"] + "*", out + "*"),
            starts=(machine.format("score-file"), machine.format("backlog")), dead_letters=(DLQ_ARN,),
        ),
        "PlanRunFunction": Grants(reads=(inputs,), writes=(staging,)),
        "ScoreChunkFunction": Grants(
            reads=(inputs, objects + out + "staging/*/source/*", *model),
            writes=(objects + out + "staging/*/parts/*", objects + out + "staging/*/counts/*"),
        ),
        "MergeRunFunction": Grants(
            reads=(staging, objects + out + "manifests/*"), writes=(objects + out + "results/*", objects + out + "manifests/*"),
            deletes=(staging, objects + out + "results/*"), list_prefixes=(out + "staging/*", out + "manifests/*"),
        ),
        "ScoreFileStateMachine": Grants(
            reads=(objects + out + "staging/*/plan.json",),
            invokes=("<PlanRunFunction.Arn>", "<ScoreChunkFunction.Arn>", "<MergeRunFunction.Arn>"),
            starts=(machine.format("score-file"),), watches=(children.format("score-file"),), delivers_logs=True,
        ),
        "BacklogStateMachine": Grants(
            reads=(objects + out + "staging/backlog-*.json",), invokes=("<ScoreObjectFunction.Arn>",),
            starts=(machine.format("backlog"),), watches=(children.format("backlog"),), delivers_logs=True,
        ),
    }


def policy_problems(statements: list[dict], grants: Grants, *, bucket: str) -> list[str]:
    """What in `statements` reaches beyond `grants` (empty when least privilege holds).

    No wildcard action, no NotAction/NotResource, a listing only on the bucket with an s3:prefix condition inside
    the granted prefixes, and every other action only on resources inside what `grants` names for it.
    """
    by_action = {
        "s3:GetObject": grants.reads,
        "s3:DeleteObject": grants.deletes,
        "states:StartExecution": grants.starts,
        "states:DescribeExecution": grants.watches,
        "states:StopExecution": grants.watches,
        "lambda:InvokeFunction": grants.invokes,
        "sqs:SendMessage": grants.dead_letters,
        **{action: grants.writes for action in S3_WRITES},
        **{action: ("*",) if grants.delivers_logs else () for action in LOG_DELIVERY},
    }
    bucket_arn = f"arn:aws:s3:::{bucket}"
    problems = []
    for st in statements:
        where = f"{st['_policy']}/{st.get('Sid', '(no Sid)')}"
        if st.get("Effect") != "Allow":
            continue
        if "NotAction" in st or "NotResource" in st:
            problems.append(f"{where}: NotAction/NotResource grants everything else")
            continue
        resources = as_list(st.get("Resource", []))
        for action in as_list(st.get("Action", [])):
            bad = []
            if "*" in action:
                bad.append(f"wildcard action {action}")
            elif action == "s3:ListBucket":
                prefixes = as_list(st.get("Condition", {}).get("StringLike", {}).get("s3:prefix", []))
                if resources != [bucket_arn]:
                    bad.append(f"{action} on {resources}, not just {bucket_arn}")
                if not prefixes or not all(_inside(x, grants.list_prefixes) for x in prefixes):
                    bad.append(f"{action} is not limited by an s3:prefix condition to {list(grants.list_prefixes)}")
            elif action not in by_action or not by_action[action]:
                bad.append(f"{action} is not an action this role needs")
            else:
                bad += [f"{action} on {r}" for r in resources if not _inside(r, by_action[action])]
            problems += [f"{where}: {b}" for b in bad]
    return problems


def role_problems(cfn: dict, resolve: Resolver) -> dict[str, list[str]]:
    """`policy_problems` for the role of each function and state machine, with the template's own parameters."""
    bucket = resolve(cfn["Resources"]["Bucket"]["Properties"]["BucketName"])
    found = {}
    for logical_id, grants in expected_grants(resolve, bucket).items():
        role = role_of(cfn, logical_id)
        managed = set(resolve(cfn["Resources"][role]["Properties"].get("ManagedPolicyArns", [])))
        found[logical_id] = [f"{role}: managed policy {arn}" for arn in sorted(managed - ALLOWED_MANAGED_POLICIES)]
        found[logical_id] += policy_problems(role_statements(cfn, resolve, role), grants, bucket=bucket)
    return found
