"""Hardening of template.yaml after the SAM transform: bucket, events, retries, logs, tracing, layers."""

from __future__ import annotations

import pytest

from sam_template import ALL_FUNCTIONS, BUCKET, DLQ_ARN, FUNCTIONS
from tweetmood.readers import FORMATS

pytestmark = pytest.mark.unit

SUFFIXES = {suffix + gz for suffix in FORMATS for gz in ("", ".gz")}  # every input the core reads
SEVEN_DAYS, FOURTEEN_DAYS = 7, 14 * 24 * 3600


def _resources(cfn: dict, kind: str) -> dict:
    return {k: r for k, r in cfn["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def bucket(cfn, resolve) -> dict:
    return resolve(cfn["Resources"]["Bucket"]["Properties"])


def test_the_bucket_blocks_every_kind_of_public_access(bucket):
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_the_bucket_encrypts_versions_and_cleans_up_after_itself(bucket):
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = [r for r in bucket["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled"]
    assert any(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays", 0) > 0 for r in rules)
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation", 99) <= SEVEN_DAYS for r in rules)


def test_the_bucket_name_comes_from_the_stack_and_matches_the_functions_environment(cfn, sam, resolve, bucket):
    assert sam["Resources"]["Bucket"]["Properties"]["BucketName"] == {
        "Fn::Sub": "${AWS::StackName}-${AWS::AccountId}-${AWS::Region}"
    }
    assert bucket["BucketName"] == BUCKET
    for function in ALL_FUNCTIONS:
        assert resolve(cfn["Resources"][function]["Properties"]["Environment"])["Variables"]["BUCKET_NAME"] == BUCKET


def test_the_bucket_policy_refuses_every_request_without_tls(cfn, resolve):
    (policy,) = [resolve(p["Properties"]) for p in _resources(cfn, "AWS::S3::BucketPolicy").values()]
    assert policy["Bucket"] == "<Bucket>"
    (deny,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert sorted(deny["Resource"]) == ["<Bucket.Arn>", "<Bucket.Arn>/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_uploads_of_every_suffix_the_core_reads_under_the_input_prefix_invoke_the_scorer(cfn, resolve, bucket):
    configs = bucket["NotificationConfiguration"]["LambdaConfigurations"]
    assert {c["Function"] for c in configs} == {"<ScoreObjectFunction.Arn>"}
    assert {c["Event"] for c in configs} == {"s3:ObjectCreated:*"}
    rules = [{r["Name"]: r["Value"] for r in c["Filter"]["S3Key"]["Rules"]} for c in configs]
    assert {r["prefix"] for r in rules} == {"incoming/"}
    assert sorted(r["suffix"] for r in rules) == sorted(SUFFIXES)


def test_no_suffix_filter_overlaps_another_which_s3_would_reject(bucket):
    suffixes = [r["Value"] for c in bucket["NotificationConfiguration"]["LambdaConfigurations"]
                for r in c["Filter"]["S3Key"]["Rules"] if r["Name"] == "suffix"]
    overlapping = [(a, b) for a in suffixes for b in suffixes if a != b and b.endswith(a)]
    assert overlapping == []


def test_s3_may_invoke_the_scorer_only_from_this_account(cfn, resolve):
    permissions = [resolve(p["Properties"]) for p in _resources(cfn, "AWS::Lambda::Permission").values()]
    s3_permissions = [p for p in permissions if p["Principal"] == "s3.amazonaws.com"]
    assert len(s3_permissions) == len(SUFFIXES)
    assert all(p["SourceAccount"] == "123456789012" and p["FunctionName"] == "<ScoreObjectFunction>" for p in s3_permissions)


@pytest.mark.parametrize("function", ALL_FUNCTIONS)
def test_each_function_is_traced_capped_and_runs_on_python_312_with_three_layers(cfn, resolve, function):
    props = resolve(cfn["Resources"][function]["Properties"])
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Runtime"] == "python3.12" and props["Architectures"] == ["x86_64"]
    assert int(props["ReservedConcurrentExecutions"]) >= 1
    assert props["Timeout"] <= 900 and props["MemorySize"] == resolve.params["MemorySize"]
    assert [layer.split("Layer")[0] for layer in props["Layers"]] == ["<Runtime", "<Core", "<Model"]


def test_only_one_sweep_runs_at_a_time_and_the_scorer_follows_its_parameter(cfn, sam):
    assert cfn["Resources"]["SweepPendingFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert cfn["Resources"]["ScoreObjectFunction"]["Properties"]["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}


@pytest.mark.parametrize("function", ALL_FUNCTIONS)
def test_each_function_logs_to_its_own_group_with_retention(cfn, resolve, function):
    log_group = cfn["Resources"][function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    group = cfn["Resources"][log_group]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert int(resolve.params["LogRetentionDays"]) > 0


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_retries_twice_then_sends_the_event_to_the_dead_letter_queue(cfn, resolve, function):
    (config,) = [resolve(c["Properties"]) for c in _resources(cfn, "AWS::Lambda::EventInvokeConfig").values()
                 if c["Properties"]["FunctionName"] == {"Ref": function}]
    assert config["MaximumRetryAttempts"] == 2
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 21600
    assert config["DestinationConfig"] == {"OnFailure": {"Destination": DLQ_ARN}}


def test_the_dead_letter_queue_is_encrypted_keeps_messages_14_days_and_refuses_plain_http(cfn, resolve):
    queue = resolve(cfn["Resources"]["DeadLetterQueue"]["Properties"])
    assert queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue
    assert queue["MessageRetentionPeriod"] == FOURTEEN_DAYS
    (policy,) = [resolve(p["Properties"]) for p in _resources(cfn, "AWS::SQS::QueuePolicy").values()]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    events = statements["SweepScheduleDeadLetters"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"} and events["Action"] == "sqs:SendMessage"
    assert events["Condition"] == {"ArnEquals": {"aws:SourceArn": "<SweepPendingFunctionSweep.Arn>"}}


def test_the_sweep_runs_on_the_schedule_parameter_with_a_dead_letter_queue(cfn, resolve):
    (rule,) = [resolve(r["Properties"]) for r in _resources(cfn, "AWS::Events::Rule").values()]
    assert rule["ScheduleExpression"] == "rate(15 minutes)"
    (target,) = rule["Targets"]
    assert target["Arn"] == "<SweepPendingFunction.Arn>"
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
    assert "<SweepPendingFunctionSweep.Arn>" in str(resolve(cfn["Resources"]["DeadLetterQueuePolicy"]))


def test_the_functions_get_every_setting_the_core_reads(cfn, resolve):
    env = resolve(cfn["Resources"]["ScoreObjectFunction"]["Properties"]["Environment"])["Variables"]
    assert env == {
        "INPUT_PREFIX": "incoming/",
        "OUTPUT_PREFIX": "scored/",
        "MODEL_DIR": "/opt/model",
        "MODEL_URI": "",
        "BUCKET_NAME": BUCKET,
        "POWERTOOLS_SERVICE_NAME": "tweetmood",
        "POWERTOOLS_METRICS_NAMESPACE": "tweetmood",
        "LOG_LEVEL": "INFO",
        "INLINE_MAX_BYTES": "8388608",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:tweetmood-score-file",
        "BACKLOG_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:tweetmood-backlog",
    }
    sweep = resolve(cfn["Resources"]["SweepPendingFunction"]["Properties"]["Environment"])["Variables"]
    assert sweep == env
    plan = resolve(cfn["Resources"]["PlanRunFunction"]["Properties"]["Environment"])["Variables"]
    assert plan["CHUNK_ROWS"] == "50000" and "STATE_MACHINE_ARN" not in plan


def test_the_layers_build_from_their_folders(sam):
    layers = {k: r for k, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion"}
    assert {k: (r["Properties"]["ContentUri"], r["Metadata"]["BuildMethod"]) for k, r in layers.items()} == {
        "RuntimeLayer": ("layers/runtime/", "python3.12"),
        "CoreLayer": ("layers/core/", "python3.12"),
        "ModelLayer": ("layers/model/", "makefile"),
    }


def test_the_template_refuses_the_same_prefix_for_inputs_and_outputs(sam):
    (assertion,) = sam["Rules"]["PrefixesDoNotOverlap"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "InputPrefix"}, {"Ref": "OutputPrefix"}]}]}


def test_every_skipped_check_says_why(sam):
    skips = [(name, skip) for name, r in sam["Resources"].items()
             for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", [])]
    assert skips, "the template skips checkov checks; this test should see them"
    for name, skip in skips:
        assert skip["id"].startswith("CKV_AWS_"), (name, skip)
        assert len(skip.get("comment", "")) >= 40, f"{name} skips {skip['id']} without a reason"


def test_the_outputs_name_the_bucket_uris_functions_and_queue(cfn, resolve):
    outputs = {k: resolve(v["Value"]) for k, v in cfn["Outputs"].items()}
    assert outputs["InputUri"] == "s3://<Bucket>/incoming/" and outputs["OutputUri"] == "s3://<Bucket>/scored/"
    assert {"BucketName", "ScoreObjectFunctionArn", "SweepPendingFunctionArn", "DeadLetterQueueUrl"} <= set(outputs)
