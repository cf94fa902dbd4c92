"""Render the state machines of template.yaml with values for their DefinitionSubstitutions (lint and tests).

CloudFormation fills `${Name}` placeholders in each `DefinitionUri` file from the resource's
DefinitionSubstitutions. `render` does the same with values given by the caller, and refuses a placeholder the
template does not substitute, or a substitution the definition never uses, so the two cannot drift apart.
`python statemachine/render.py OUT_DIR` writes every definition with stand-in values (dummy ARNs, parameter
defaults) for asl-validator.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from samtranslator.yaml_helper import yaml_parse

REPO = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")
STAND_IN_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tweetmood-{}"


def state_machines(template: Path = REPO / "template.yaml") -> dict[str, dict]:
    """Logical id -> {"path": definition file, "substitutions": DefinitionSubstitutions as written}."""
    sam = yaml_parse(template.read_text(encoding="utf-8"))
    return {
        name: {"path": REPO / r["Properties"]["DefinitionUri"], "substitutions": r["Properties"].get("DefinitionSubstitutions", {})}
        for name, r in sam["Resources"].items()
        if r["Type"] == "AWS::Serverless::StateMachine"
    }


def render(logical_id: str, values: dict[str, str], template: Path = REPO / "template.yaml") -> dict:
    """The definition of state machine `logical_id` with every placeholder replaced by `values`, parsed."""
    machine = state_machines(template)[logical_id]
    text = machine["path"].read_text(encoding="utf-8")
    used, declared = set(PLACEHOLDER.findall(text)), set(machine["substitutions"])
    if used != declared:
        raise ValueError(
            f"{machine['path'].name}: placeholders {sorted(used - declared)} have no DefinitionSubstitutions entry in "
            f"{logical_id}, and entries {sorted(declared - used)} are never used; make them match"
        )
    if set(values) != declared:
        raise ValueError(f"values for {sorted(values)} given, {logical_id} substitutes {sorted(declared)}")
    return json.loads(PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text))


def stand_in_values(logical_id: str, template: Path = REPO / "template.yaml") -> dict[str, str]:
    """A dummy function ARN for each `...Arn` substitution, the parameter's default for each `!Ref Parameter`."""
    sam = yaml_parse(template.read_text(encoding="utf-8"))
    values = {}
    for name, value in state_machines(template)[logical_id]["substitutions"].items():
        if name.endswith("Arn"):
            values[name] = STAND_IN_ARN.format(name.removesuffix("Arn"))
        else:
            values[name] = str(sam["Parameters"][value["Ref"]]["Default"])
    return values


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for logical_id, machine in state_machines().items():
        target = out / machine["path"].name
        target.write_text(json.dumps(render(logical_id, stand_in_values(logical_id)), indent=2), encoding="utf-8")
        print(target)


if __name__ == "__main__":
    main(*sys.argv[1:])
