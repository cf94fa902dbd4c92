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
    assert text.count("            - WS1004\n") == 2
    unignored = tmp_path / "template.yaml"
    unignored.write_text(text.replace("            - WS1004\n", "            - W1020\n"), encoding="utf-8")
    assert [m.split()[0] for m in cfn_lint(unignored)] == ["WS1004", "WS1004"]
