"""template.yaml as CloudFormation: translated by samtranslator, intrinsics resolved, IAM statements checked."""

from __future__ import annotations

import copy
import re
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
FUNCTIONS = ("ScoreObjectFunction", "SweepPendingFunction")
DLQ_ARN = "<DeadLetterQueue.Arn>"
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
S3_READS = {"s3:GetObject"}
S3_WRITES = {"s3:PutObject", "s3:AbortMultipartUpload"}
# What the functions may read below the output prefix: manifests and claims, never the results.
CONTROL_SUFFIXES = (".manifest.json", ".claim")

_NO_VALUE = object()


def load_sam(path: Path = TEMPLATE) -> dict:
    """The SAM template as a dict, short-form tags (!Ref, !Sub …) expanded."""
    return yaml_parse(path.read_text(encoding="utf-8"))


def translate(sam: dict) -> dict:
    """CloudFormation for `sam`, as the SAM transform would produce it (local code paths stand in as S3)."""
    sam = copy.deepcopy(sam)
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
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
            if fn == "Condition":
                return self.conditions[arg]
        return {k: v for k, v in ((k, self(v)) for k, v in node.items()) if v is not _NO_VALUE}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def function_role(cfn: dict, function: str) -> str:
    """The logical id of the IAM role a function runs as."""
    role = cfn["Resources"][function]["Properties"]["Role"]
    assert "Fn::GetAtt" in role, f"{function} uses an externally defined role {role}: it cannot be checked here"
    return role["Fn::GetAtt"][0]


def role_statements(cfn: dict, resolve: Resolver, role: str) -> list[dict]:
    """Every inline policy statement of `role`, resolved, each tagged with its policy name."""
    statements = []
    for policy in cfn["Resources"][role]["Properties"].get("Policies", []):
        document = resolve(policy["PolicyDocument"])
        for statement in as_list(document["Statement"]):
            statements.append({**statement, "_policy": policy["PolicyName"]})
    return statements


def policy_problems(
    statements: list[dict],
    *,
    bucket: str,
    input_prefix: str,
    output_prefix: str,
    model_path: str | None = None,
    dlq_arn: str = DLQ_ARN,
) -> list[str]:
    """What in `statements` reaches beyond the scoring contract (empty when least privilege holds).

    Reads: below the input prefix, manifests and claims below the output prefix, the model path if set.
    Writes: PutObject/AbortMultipartUpload below the output prefix only. ListBucket: only on the
    bucket with an s3:prefix condition below the input or output prefix. No wildcard action,
    no Delete, no NotAction/NotResource, nothing but sqs:SendMessage to the dead-letter queue.
    """
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
            elif "delete" in action.lower():
                bad.append(f"{action} deletes")
            elif action == "s3:ListBucket":
                prefixes = as_list(st.get("Condition", {}).get("StringLike", {}).get("s3:prefix", []))
                if resources != [bucket_arn]:
                    bad.append(f"{action} on {resources}, not just {bucket_arn}")
                if not prefixes or not all(p.startswith((input_prefix, output_prefix)) for p in prefixes):
                    bad.append(f"{action} is not limited by an s3:prefix condition to {input_prefix} or {output_prefix}")
            elif action in S3_READS:
                for r in resources:
                    input_read = r.startswith(f"{bucket_arn}/{input_prefix}")
                    manifest_read = r.startswith(f"{bucket_arn}/{output_prefix}") and r.endswith(CONTROL_SUFFIXES)
                    model_read = model_path is not None and r == f"arn:aws:s3:::{model_path}*"
                    if not (input_read or manifest_read or model_read):
                        bad.append(f"{action} reads {r}")
            elif action in S3_WRITES:
                bad += [f"{action} writes {r}" for r in resources if not r.startswith(f"{bucket_arn}/{output_prefix}")]
            elif action == "sqs:SendMessage":
                bad += [f"{action} to {r}" for r in resources if r != dlq_arn]
            else:
                bad.append(f"{action} is not an action the functions need")
            problems += [f"{where}: {b}" for b in bad]
    return problems


def function_problems(cfn: dict, resolve: Resolver) -> dict[str, list[str]]:
    """`policy_problems` for each function's role, with the template's own prefixes and model URI."""
    model_uri = resolve.params["ModelUri"]
    bucket = resolve(cfn["Resources"]["Bucket"]["Properties"]["BucketName"])
    found = {}
    for function in FUNCTIONS:
        role = function_role(cfn, function)
        managed = set(resolve(cfn["Resources"][role]["Properties"].get("ManagedPolicyArns", [])))
        found[function] = [f"{role}: managed policy {arn}" for arn in sorted(managed - ALLOWED_MANAGED_POLICIES)]
        found[function] += policy_problems(
            role_statements(cfn, resolve, role),
            bucket=bucket,
            input_prefix=resolve.params["InputPrefix"],
            output_prefix=resolve.params["OutputPrefix"],
            model_path=model_uri.removeprefix("s3://") if model_uri else None,
        )
    return found
