"""cfn-lint with the serverless rules on template.yaml, as `make lint` runs it (checkov and sam build run there only)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "template.yaml"


def cfn_lint(template: Path) -> list[str]:
    from cfnlint.api import ManualArgs, lint_file

    config = ManualArgs(append_rules=["cfn_lint_serverless.rules"], regions=["us-east-1"])
    return [f"{m.rule.id} {m.message}" for m in lint_file(template, config=config)]


def test_the_template_passes_cfn_lint_and_the_serverless_rules():
    assert cfn_lint(TEMPLATE) == []


def test_the_serverless_rules_are_really_applied(tmp_path):
    """Without its justified ignore, the serverless rule WS1004 must fire: the rules are loaded."""
    text = TEMPLATE.read_text(encoding="utf-8")
    assert text.count("            - WS1004\n") == 5
    unignored = tmp_path / "template.yaml"
    unignored.write_text(text.replace("            - WS1004\n", "            - W1020\n"), encoding="utf-8")
    assert [m.split()[0] for m in cfn_lint(unignored)] == ["WS1004"] * 5


ASL_VALIDATOR = REPO / ".tools" / "npm" / "node_modules" / ".bin" / "asl-validator"
needs_asl_validator = pytest.mark.skipif(not ASL_VALIDATOR.exists(), reason="asl-validator not installed: run `make lint` once")


def _render_definitions(out: Path) -> list[Path]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("render", REPO / "statemachine" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    render.main(str(out))
    return sorted(out.glob("*.asl.json"))


def _asl_validator(path: Path):
    import subprocess

    return subprocess.run([str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60)


@needs_asl_validator
def test_both_state_machine_definitions_pass_asl_validator_once_substituted(tmp_path):
    definitions = _render_definitions(tmp_path)
    assert [p.name for p in definitions] == ["backlog.asl.json", "score_file.asl.json"]
    for path in definitions:
        result = _asl_validator(path)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_asl_validator
def test_asl_validator_refuses_a_definition_with_a_dangling_next(tmp_path):
    import json

    (_, score_file) = _render_definitions(tmp_path)
    definition = json.loads(score_file.read_text())
    definition["States"]["MergeRun"]["Next"] = "NoSuchState"
    del definition["States"]["MergeRun"]["End"]
    score_file.write_text(json.dumps(definition))
    assert _asl_validator(score_file).returncode != 0
