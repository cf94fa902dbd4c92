"""The score-file and backlog state machines: template resources, the concurrency rule and the ASL definitions."""

from __future__ import annotations

import importlib.util
import itertools
import json

import pytest

from sam_template import REPO, Resolver

pytestmark = pytest.mark.unit

_spec = importlib.util.spec_from_file_location("render", REPO / "statemachine" / "render.py")
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)

MACHINES = {"ScoreFileStateMachine": "score-file", "BacklogStateMachine": "backlog"}
THROTTLING = {"Lambda.TooManyRequestsException", "Lambda.ServiceException", "Lambda.SdkClientException"}


@pytest.fixture(scope="module")
def definitions() -> dict[str, dict]:
    return {m: render.render(m, render.stand_in_values(m)) for m in MACHINES}


def _states(definition: dict):
    """Every state, nested Map processors included, as (name, state)."""
    for name, state in definition["States"].items():
        yield name, state
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"])


@pytest.mark.parametrize("machine", MACHINES)
def test_each_machine_is_standard_traced_and_logs_errors_without_execution_data(cfn, resolve, machine):
    props = resolve(cfn["Resources"][machine]["Properties"])
    assert props["StateMachineType"] == "STANDARD"
    assert props["StateMachineName"] == f"tweetmood-{MACHINES[machine]}"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] in {"ERROR", "ALL"} and logging["IncludeExecutionData"] is False
    (destination,) = logging["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"].strip("<>").removesuffix(".Arn")
    assert cfn["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_functions_start_the_machines_by_the_names_the_machines_are_given(cfn, resolve):
    env = resolve(cfn["Resources"]["SweepPendingFunction"]["Properties"]["Environment"])["Variables"]
    names = {m: resolve(cfn["Resources"][m]["Properties"]["StateMachineName"]) for m in MACHINES}
    assert env["STATE_MACHINE_ARN"].rsplit(":", 1)[1] == names["ScoreFileStateMachine"]
    assert env["BACKLOG_STATE_MACHINE_ARN"].rsplit(":", 1)[1] == names["BacklogStateMachine"]


def test_the_definitions_are_filled_from_the_function_arns_and_the_concurrency_parameters(sam):
    subs = {m: sam["Resources"][m]["Properties"]["DefinitionSubstitutions"] for m in MACHINES}
    assert subs["ScoreFileStateMachine"] == {
        "PlanRunFunctionArn": {"Fn::GetAtt": ["PlanRunFunction", "Arn"]},
        "ScoreChunkFunctionArn": {"Fn::GetAtt": ["ScoreChunkFunction", "Arn"]},
        "MergeRunFunctionArn": {"Fn::GetAtt": ["MergeRunFunction", "Arn"]},
        "MapMaxConcurrency": {"Ref": "MapMaxConcurrency"},
    }
    assert subs["BacklogStateMachine"] == {
        "ScoreObjectFunctionArn": {"Fn::GetAtt": ["ScoreObjectFunction", "Arn"]},
        "ReservedConcurrency": {"Ref": "ReservedConcurrency"},
    }


def test_render_refuses_values_that_do_not_match_the_substitutions():
    values = render.stand_in_values("ScoreFileStateMachine")
    with pytest.raises(ValueError, match="MapMaxConcurrency"):
        render.render("ScoreFileStateMachine", {k: v for k, v in values.items() if k != "MapMaxConcurrency"})


def test_the_concurrency_rule_admits_exactly_a_map_concurrency_below_the_chunk_concurrency(sam, cfn):
    params = sam["Parameters"]
    rule = sam["Rules"]["MapConcurrencyBelowChunkConcurrency"]["Assertions"]
    pairs = itertools.product(params["MapMaxConcurrency"]["AllowedValues"], params["ChunkConcurrency"]["AllowedValues"])
    for map_max, chunk in pairs:
        resolve = Resolver(cfn, MapMaxConcurrency=str(map_max), ChunkConcurrency=str(chunk))
        assert all(resolve(a["Assert"]) for a in rule) == (map_max < chunk), (map_max, chunk)
    assert int(params["MapMaxConcurrency"]["Default"]) < int(params["ChunkConcurrency"]["Default"])


def test_the_chunk_scorer_reserves_the_chunk_concurrency(cfn):
    props = cfn["Resources"]["ScoreChunkFunction"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {"Ref": "ChunkConcurrency"}


@pytest.mark.parametrize("machine", MACHINES)
def test_every_lambda_task_retries_throttling_and_service_errors_with_backoff(definitions, machine):
    tasks = [(n, s) for n, s in _states(definitions[machine]) if s["Type"] == "Task"]
    assert tasks
    for name, task in tasks:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        (retry,) = [r for r in task["Retry"] if THROTTLING <= set(r["ErrorEquals"])]
        assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 3 and retry["JitterStrategy"] == "FULL", name


def test_every_score_file_state_ends_in_fail_run_on_any_error(definitions):
    states = definitions["ScoreFileStateMachine"]["States"]
    for name in ("PlanRun", "ScoreChunks", "MergeRun"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "FailRun"}], name
    fail_run = states["FailRun"]
    assert fail_run["Parameters"]["FunctionName"] == render.STAND_IN_ARN.format("MergeRunFunction")
    assert fail_run["Parameters"]["Payload"] == {"action": "fail", "run.$": "$$.Execution.Input", "error.$": "$.error"}
    assert fail_run["Next"] == "RunFailed" and [c["Next"] for c in fail_run["Catch"]] == ["RunFailed"]
    assert states["RunFailed"]["Type"] == "Fail"


def test_the_chunk_map_reads_the_plan_runs_standard_children_and_tolerates_no_failure(definitions):
    states = definitions["ScoreFileStateMachine"]["States"]
    assert states["PlanRun"]["ResultSelector"]["max_concurrency.$"] == "States.StringToJson('250')"
    chunks = states["ScoreChunks"]
    assert chunks["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.run.bucket", "Key.$": "$.run.plan_key"},
    }
    assert chunks["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert chunks["MaxConcurrencyPath"] == "$.max_concurrency" and chunks["ToleratedFailurePercentage"] == 0
    assert chunks["ResultPath"] is None, "the map's output must not grow with the number of chunks"
    assert states["MergeRun"]["Parameters"]["Payload.$"] == "$.run"


def test_the_backlog_map_hands_each_item_to_the_scorer_at_its_reserved_concurrency(definitions):
    states = definitions["BacklogStateMachine"]["States"]
    assert states["Limits"]["Parameters"] == {"max_concurrency.$": "States.StringToJson('10')"}
    scan = states["ScorePendingInputs"]
    assert scan["ItemReader"]["Parameters"] == {"Bucket.$": "$.bucket", "Key.$": "$.backlog_key"}
    assert scan["ItemSelector"] == {"tweetmood_backlog_item.$": "$$.Map.Item.Value"}
    (task,) = scan["ItemProcessor"]["States"].values()
    assert task["Parameters"]["FunctionName"] == render.STAND_IN_ARN.format("ScoreObjectFunction")
    assert scan["ResultPath"] is None


@pytest.mark.parametrize("machine", MACHINES)
def test_the_definitions_stay_inside_what_moto_executes(machine):
    """moto runs JSON item readers only, no ItemBatcher, no EXPRESS children, no ResultWriter, and a float tolerance."""
    raw = render.state_machines()[machine]["path"].read_text()
    definition = json.loads(raw)
    for name, state in _states(definition):
        assert "ItemBatcher" not in state and "ResultWriter" not in state, name
        if "ItemReader" in state:
            assert state["ItemReader"]["ReaderConfig"]["InputType"] == "JSON", name
            assert state["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD", name
            assert isinstance(state["ToleratedFailurePercentage"], float), name
