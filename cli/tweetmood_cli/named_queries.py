"""`make queries`: write template.yaml's Athena named queries from queries/*.sql, the SQL the report runs too."""

from __future__ import annotations

import sys
from pathlib import Path

from tweetmood_cli.report import query_names, query_text

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
BEGIN = "  # BEGIN named queries: written by `make queries` from cli/tweetmood_cli/queries/*.sql; edit those, not this\n"
END = "  # END named queries\n"


def logical_id(name: str) -> str:
    """`label_distribution` -> `ResultsQueryLabelDistribution`."""
    return "ResultsQuery" + "".join(part.capitalize() for part in name.split("_"))


def description(sql: str) -> str:
    """The query's first `--` comment line."""
    first = sql.splitlines()[0]
    assert first.startswith("-- "), f"a query starts with a '-- what it answers' line, not {first!r}"
    return first[3:].strip()


def named_query_block() -> str:
    """The YAML of every named query, between the BEGIN and END marker lines."""
    out = [BEGIN]
    for name in query_names():
        sql = query_text(name)
        body = "".join(f"        {line}\n" if line else "\n" for line in sql.rstrip("\n").split("\n"))
        out.append(
            f"  {logical_id(name)}:\n"
            "    Type: AWS::Athena::NamedQuery\n"
            "    Properties:\n"
            f"      Name: !Sub ${{AWS::StackName}}-{name}\n"
            f"      Description: {_yaml_string(description(sql))}\n"
            "      Database: !Ref ResultsDatabase\n"
            "      WorkGroup: !Ref ResultsWorkGroup\n"
            # !Sub fills ${LowConfidenceThreshold}; Athena's "$path" has no braces and passes through.
            "      QueryString: !Sub |\n"
            f"{body}"
        )
    out.append(END)
    return "".join(out)


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rendered_template(text: str) -> str:
    """`text` (template.yaml) with its named-query block replaced by the one the .sql files give."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + named_query_block() + text[end:]


def main() -> int:
    text = TEMPLATE.read_text(encoding="utf-8")
    new = rendered_template(text)
    if new != text:
        TEMPLATE.write_text(new, encoding="utf-8")
        print(f"updated the named queries in {TEMPLATE.name}")
    else:
        print(f"the named queries in {TEMPLATE.name} are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
